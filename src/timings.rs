//! Seconds per phase of a run, in the order the phases ran.

use std::fmt;
use std::time::Instant;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One timed entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    name: String,
    seconds: f64,
    /// Phases run one after another and add up to the total; details break
    /// a phase down (or overlap it) and are shown but not added.
    in_total: bool,
}

/// Seconds per phase, in execution order. Stored in the manifest as a JSON
/// object in that order; a read-back `Timings` counts every entry as a phase.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    entries: Vec<Entry>,
}

impl Timings {
    /// Records a phase that took `seconds`; it counts towards [`Timings::total`].
    pub fn phase(&mut self, name: &str, seconds: f64) {
        self.push(name, seconds, true);
    }

    /// Records a phase that started at `since` and ends now.
    pub fn phase_since(&mut self, name: &str, since: Instant) {
        self.phase(name, since.elapsed().as_secs_f64());
    }

    /// Records a breakdown of a phase, shown but not added to the total.
    pub fn detail(&mut self, name: &str, seconds: f64) {
        self.push(name, seconds, false);
    }

    fn push(&mut self, name: &str, seconds: f64, in_total: bool) {
        self.entries.push(Entry {
            name: name.to_string(),
            seconds,
            in_total,
        });
    }

    /// Seconds recorded under `name`, if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries.iter().find(|e| e.name == name).map(|e| e.seconds)
    }

    /// Sum of the phases (details excluded).
    pub fn total(&self) -> f64 {
        self.entries.iter().filter(|e| e.in_total).map(|e| e.seconds).sum()
    }

    /// Entries as (name, seconds), in execution order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.entries.iter().map(|e| (e.name.as_str(), e.seconds))
    }
}

impl Serialize for Timings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for e in &self.entries {
            map.serialize_entry(&e.name, &e.seconds)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Timings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Timings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of phase names to seconds")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Timings, A::Error> {
                let mut t = Timings::default();
                while let Some((name, seconds)) = map.next_entry::<String, f64>()? {
                    t.phase(&name, seconds);
                }
                Ok(t)
            }
        }
        d.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_adds_phases_not_details_and_order_is_kept() {
        let mut t = Timings::default();
        t.phase("similarity", 1.0);
        t.detail("gpu_upload", 0.5);
        t.phase("similar", 2.0);
        t.phase("load", 0.25);
        assert_eq!(t.total(), 3.25);
        let names: Vec<&str> = t.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["similarity", "gpu_upload", "similar", "load"]);
    }

    #[test]
    fn json_round_trip_keeps_the_order() {
        let mut t = Timings::default();
        t.phase("write", 1.5);
        t.phase("load", 0.5);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"write":1.5,"load":0.5}"#);
        let back: Timings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}
