"""comparable_sales: the nearest sold houses of similar size, at the right distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from homevalue import comparable_sales
from homevalue.comps import SIZE_TOLERANCES

AMES = (42.03, -93.62)  # (lat, lon) of an ordinary North Ames street


def haversine_km(lat: float, lon: float, lats, lons) -> np.ndarray:
    """Great-circle distance, written out independently of the code under test."""
    lat1, lon1 = np.radians(lat), np.radians(lon)
    lat2, lon2 = np.radians(np.asarray(lats, float)), np.radians(np.asarray(lons, float))
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def test_k_similar_sized_sales_sorted_by_distance(reference):
    comps = comparable_sales(*AMES, 1500, k=5)
    assert len(comps) == 5
    assert comps["distance_km"].is_monotonic_increasing
    assert comps["Gr_Liv_Area"].between(1500 * 0.75, 1500 * 1.25).all()
    assert (comps["size_tolerance"] == 0.25).all()
    assert set(comps["Sale_ID"]) <= set(reference["Sale_ID"])
    assert {"Sale_Price", "Neighborhood", "Latitude", "Longitude"} <= set(comps.columns)


@pytest.mark.parametrize("k", [1, 5, 12])
def test_they_are_the_nearest_of_that_size(reference, k):
    comps = comparable_sales(*AMES, 2000, k=k)
    similar = reference[reference["Gr_Liv_Area"].between(1500, 2500)]
    nearest = np.sort(haversine_km(*AMES, similar["Latitude"], similar["Longitude"]))[:k]
    np.testing.assert_allclose(comps["distance_km"], nearest, rtol=0.005, atol=0.001)


def test_distances_agree_with_haversine(reference):
    comps = comparable_sales(*AMES, 1500, k=25)
    expected = haversine_km(*AMES, comps["Latitude"], comps["Longitude"])
    assert expected.min() > 0.01  # far enough for a relative comparison to mean something
    # distance_km is rounded to the metre, hence the small absolute allowance.
    np.testing.assert_allclose(comps["distance_km"], expected, rtol=0.005, atol=0.0005)


def test_across_town_distances_agree_with_haversine(reference):
    # From the south-west corner of town every sale is 2-10 km away.
    comps = comparable_sales(41.99, -93.69, None, k=len(reference))
    assert len(comps) == len(reference)
    expected = haversine_km(41.99, -93.69, comps["Latitude"], comps["Longitude"])
    assert expected.max() > 9
    far = expected > 0.05
    np.testing.assert_allclose(comps["distance_km"][far], expected[far], rtol=0.005)


def test_a_mansion_widens_the_size_tolerance_and_says_so(reference):
    area = 9000
    comps = comparable_sales(*AMES, area, k=5)
    assert len(comps) == 5
    expected = next(
        t
        for t in SIZE_TOLERANCES
        if t is None or ((reference["Gr_Liv_Area"] - area).abs() <= t * area).sum() >= 5
    )
    assert expected != 0.25
    assert (comps["size_tolerance"] == expected).all()
    assert comps["distance_km"].is_monotonic_increasing


def test_without_a_living_area_any_size_is_compared(reference):
    comps = comparable_sales(*AMES, None, k=5)
    assert len(comps) == 5
    assert comps["size_tolerance"].isna().all()
    nearest = np.sort(haversine_km(*AMES, reference["Latitude"], reference["Longitude"]))[:5]
    np.testing.assert_allclose(comps["distance_km"], nearest, rtol=0.005, atol=0.001)


def test_the_nearest_sale_to_a_sold_house_is_that_house(reference):
    alone = ~reference.duplicated(["Latitude", "Longitude"], keep=False)
    for _, sale in reference[alone].sample(20, random_state=3).iterrows():
        comps = comparable_sales(sale["Latitude"], sale["Longitude"], sale["Gr_Liv_Area"], k=3)
        first = comps.iloc[0]
        assert first["Sale_ID"] == sale["Sale_ID"]
        assert first["distance_km"] == pytest.approx(0, abs=1e-3)
        assert comps["distance_km"].iloc[1] > 0


def test_results_are_copies_not_views_of_the_reference(reference):
    comps = comparable_sales(*AMES, 1500, k=3)
    comps["Sale_Price"] = -1
    again = comparable_sales(*AMES, 1500, k=3)
    assert (again["Sale_Price"] > 0).all()
    assert isinstance(again, pd.DataFrame)
