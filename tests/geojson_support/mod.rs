//! GeoJSON helpers shared by the tests that read rsam's GeoJSON.

use serde_json::Value;

/// The first `[x, y]` of nested GeoJSON coordinates: down the rings to a
/// position.
pub fn first_vertex(coordinates: &Value) -> [f64; 2] {
    let mut v = coordinates;
    while v[0].is_array() {
        v = &v[0];
    }
    [v[0].as_f64().unwrap(), v[1].as_f64().unwrap()]
}
