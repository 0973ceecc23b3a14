//! The embedded default election: Turkey, presidential election 2023, official district-level
//! results of both rounds (provenance in data/turkey2023/SOURCE.md). Built into the binary so
//! the first command of the README needs no download and no shared folder.

pub const NAME: &str = "Turkey, presidential election 2023 (embedded official YSK data)";
pub const ROUND1: &[u8] = include_bytes!("../data/turkey2023/r1.csv.gz");
pub const ROUND2: &[u8] = include_bytes!("../data/turkey2023/r2.csv.gz");
pub const DEFINITION: &str = include_str!("../data/turkey2023/election.toml");
pub const ROUND1_NAME: &str = "embedded:turkey2023/r1.csv.gz";
pub const ROUND2_NAME: &str = "embedded:turkey2023/r2.csv.gz";
/// The 81 province boundaries of Turkey (GeoJSON, property `province` spelled as in the
/// CSVs): the default map of `tally serve` for this election (provenance in SOURCE.md).
pub const GEO: &[u8] = include_bytes!("../data/turkey2023/provinces.geojson");
pub const GEO_KEY: &str = "province";
