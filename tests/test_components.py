"""Component roles: phases, the background, variants of a phase and interactions of two."""

import numpy as np
import pytest

from hyperspy_nmfdecide.components import component_roles, spot_fraction, spot_similarity

SHAPE = (32, 32)


def spots(positions, intensities=None, sigma=1.0):
    """A unit-sum pattern of Gaussian spots at (x, y) positions."""
    yy, xx = np.indices(SHAPE)
    intensities = np.ones(len(positions)) if intensities is None else intensities
    pattern = sum(
        a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
        for (x, y), a in zip(positions, intensities)
    )
    return (pattern / pattern.sum()).ravel()


def halo():
    yy, xx = np.indices(SHAPE)
    pattern = (1 + ((xx - 16) ** 2 + (yy - 16) ** 2) / 36.0) ** -1.5
    return (pattern / pattern.sum()).ravel()


CRYSTAL_A = [(6, 6), (26, 26), (6, 26), (26, 6), (16, 6), (16, 26)]
CRYSTAL_B = [(11, 16), (21, 16), (11, 9), (21, 23), (4, 16), (28, 16)]


def masks_of(*regions, shape=(12, 12)):
    out = np.zeros((len(regions),) + shape, dtype=bool)
    for mask, (rows, cols) in zip(out, regions):
        mask[rows, cols] = True
    return out


def test_spot_similarity_sees_positions_not_intensities():
    a = spots(CRYSTAL_A)
    thicker = spots(CRYSTAL_A, intensities=[3, 0.3, 1, 2, 0.5, 1])
    b = spots(CRYSTAL_B)
    similarity = spot_similarity(np.stack([a, thicker, b, halo()]), SHAPE)
    assert similarity[0, 1] > 0.8 and similarity[0, 2] < 0.2
    # A halo has no spots: similar to nothing, whatever it overlaps.
    assert not similarity[3].any() and spot_fraction(halo()[None], SHAPE)[0] < 0.15


def test_a_variant_of_a_phase_and_a_crystal_lying_on_another():
    factors = np.stack(
        [
            halo(),  # background, everywhere
            spots(CRYSTAL_A),  # crystal A on the left
            spots(CRYSTAL_B),  # crystal B on the right
            spots(CRYSTAL_A, intensities=[3, 0.3, 1, 2, 0.5, 1]),  # A, thick, top left
            spots([(9, 20), (23, 12)]),  # a small crystal C lying on A
        ]
    )
    masks = masks_of(
        (slice(None), slice(None)),
        (slice(None), slice(0, 7)),
        (slice(None), slice(5, 12)),
        (slice(0, 5), slice(0, 5)),
        (slice(6, 9), slice(1, 4)),
    )
    roles = component_roles(factors, masks, SHAPE, background_index=0)
    assert [r["role"] for r in roles] == ["background", "phase", "phase", "variant", "phase"]
    assert roles[3]["parents"] == [1]


def test_spots_only_where_two_phases_overlap_are_an_interaction():
    double = [(x + 3, y + 2) for x, y in CRYSTAL_A[:4]]  # new spots (g1 + g2)
    factors = np.stack([halo(), spots(CRYSTAL_A), spots(CRYSTAL_B), spots(double)])
    masks = masks_of(
        (slice(None), slice(None)),
        (slice(None), slice(0, 8)),
        (slice(None), slice(4, 12)),
        (slice(2, 10), slice(4, 8)),  # inside the overlap of A and B
    )
    roles = component_roles(factors, masks, SHAPE, background_index=0)
    assert [r["role"] for r in roles] == ["background", "phase", "phase", "interaction"]
    assert roles[3]["parents"] == [1, 2] and roles[3]["contained"] == pytest.approx(1.0)


def test_a_diffuse_component_like_the_background_is_its_variant():
    shifted = np.roll(halo().reshape(SHAPE), 1, axis=1).ravel()  # the halo a pixel away
    factors = np.stack([halo(), spots(CRYSTAL_A), shifted])
    masks = masks_of(
        (slice(None), slice(None)), (slice(None), slice(0, 6)), (slice(None), slice(6, 12))
    )
    roles = component_roles(factors, masks, SHAPE, background_index=0)
    assert [r["role"] for r in roles] == ["background", "phase", "variant"]
    assert roles[2]["parents"] == [0]


def test_neighbouring_grains_with_similar_spots_stay_two_phases():
    # Touching along a boundary only (not sharing their regions): never one phase.
    factors = np.stack([spots(CRYSTAL_A), spots(CRYSTAL_A[:5] + [(12, 12)])])
    masks = masks_of((slice(None), slice(0, 6)), (slice(None), slice(6, 12)))
    assert [r["role"] for r in component_roles(factors, masks, SHAPE)] == ["phase", "phase"]
