//! Which edge nodes may host a service's edge replicas, and how many they hold.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::api::EdgeFallback;

use super::{EdgeNodeView, GeoPoint};

/// Mean Earth radius in km (IUGG), for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// An edge node that may host edge replicas of the service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Candidate {
    pub name: String,
    /// Replicas of this service the node may take: `min(maxPerNode, free capacity)`, 1 on probation.
    pub capacity: u32,
    pub score: f64,
}

/// The eligible edge nodes, best first (score descending, then name), and human-readable notes
/// on requirements that could not be applied.
pub(crate) struct Candidates {
    pub nodes: Vec<Candidate>,
    pub notes: Vec<String>,
}

impl Candidates {
    /// Replicas all candidates together can take.
    pub fn capacity(&self) -> u64 {
        self.nodes.iter().map(|c| u64::from(c.capacity)).sum()
    }
}

/// Filters and ranks edge nodes for a service. `reference_points` are the locations distances
/// are measured from (the lost regions, or all of the service's regions while none is lost);
/// when it is empty no location is known, and a distance requirement cannot be applied.
pub(crate) fn candidates(
    nodes: &[EdgeNodeView],
    edge: &EdgeFallback,
    reference_points: &[GeoPoint],
) -> Candidates {
    let requirements = &edge.requirements;
    let mut notes = Vec::new();
    let distance_limit = match requirements.max_distance_km {
        Some(limit) if reference_points.is_empty() => {
            notes.push(format!(
                "maxDistanceKm {limit} ignored: none of the regions it is measured from has a location"
            ));
            None
        }
        other => other,
    };

    let eligible = |node: &EdgeNodeView| -> bool {
        let availability_ok = match requirements.min_availability {
            Some(min) => node.availability.is_some_and(|a| a.is_finite() && a >= min),
            None => true,
        };
        // Unknown, NaN or negative prices never pass a price limit.
        let price_ok = match requirements.max_price_per_hour {
            Some(max) => node
                .price_per_hour
                .is_some_and(|p| p.is_finite() && p >= 0.0 && p <= max),
            None => true,
        };
        // A node that does not say where it is cannot show it is close enough.
        let distance_ok = match distance_limit {
            Some(limit) => node
                .location
                .filter(GeoPoint::is_valid)
                .and_then(|at| nearest_km(at, reference_points))
                .is_some_and(|km| km <= limit),
            None => true,
        };
        let labels_ok = match &requirements.selector {
            Some(selector) => selector
                .match_labels
                .iter()
                .all(|(key, value)| node.labels.get(key) == Some(value)),
            None => true,
        };
        node.verified
            && node.ready
            && !node.quarantined
            && availability_ok
            && price_ok
            && distance_ok
            && labels_ok
    };

    // Several registrations of one Node: it is used only if every one of them is eligible, with
    // the most modest capacity and score, so neither input order nor a second claim raises it.
    let mut by_name: BTreeMap<&str, Option<Candidate>> = BTreeMap::new();
    for node in nodes.iter().filter(|n| !n.name.is_empty()) {
        let candidate = eligible(node).then(|| {
            let free = node
                .capacity_replicas
                .saturating_sub(node.allocated_by_others);
            let mut capacity = free.min(edge.max_per_node);
            if node.on_probation {
                capacity = capacity.min(1);
            }
            Candidate {
                name: node.name.clone(),
                capacity,
                score: node
                    .score
                    .filter(|s| s.is_finite())
                    .unwrap_or(f64::NEG_INFINITY),
            }
        });
        by_name
            .entry(node.name.as_str())
            .and_modify(|known| {
                *known = match (known.take(), &candidate) {
                    (Some(mut a), Some(b)) => {
                        a.capacity = a.capacity.min(b.capacity);
                        a.score = a.score.min(b.score);
                        Some(a)
                    }
                    _ => None,
                }
            })
            .or_insert(candidate);
    }
    let mut nodes: Vec<Candidate> = by_name
        .into_values()
        .flatten()
        .filter(|c| c.capacity > 0)
        .collect();
    nodes.sort_by(rank);
    Candidates { nodes, notes }
}

/// Best first: higher score, then name.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then_with(|| a.name.cmp(&b.name))
}

/// Great-circle distance in km to the nearest of `points` (None when `points` has no valid one).
fn nearest_km(from: GeoPoint, points: &[GeoPoint]) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.is_valid())
        .map(|p| haversine_km(from, *p))
        .min_by(f64::total_cmp)
}

/// Great-circle (haversine) distance between two points, in km.
pub fn haversine_km(a: GeoPoint, b: GeoPoint) -> f64 {
    let (lat1, lat2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.longitude - a.longitude).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().clamp(0.0, 1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distances() {
        let frankfurt = GeoPoint::new(50.1109, 8.6821);
        let new_york = GeoPoint::new(40.7128, -74.0060);
        let km = haversine_km(frankfurt, new_york);
        assert!(
            (km - 6205.0).abs() < 15.0,
            "Frankfurt-New York is about 6205 km, got {km}"
        );
        assert!(haversine_km(frankfurt, frankfurt).abs() < 1e-9);
        let antipode = haversine_km(GeoPoint::new(0.0, 0.0), GeoPoint::new(0.0, 180.0));
        assert!((antipode - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6);
    }
}
