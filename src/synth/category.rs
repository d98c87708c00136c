//! What the generator knows about the RISORS categories it draws: their
//! names and nouns, the colours they come in, and their sizes.

/// The RISORS categories the generator draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    StorageTank,
    Vehicle,
    Airplane,
    Ship,
    Bridge,
    TennisCourt,
    BasketballCourt,
    GroundTrackField,
    Windmill,
    Chimney,
}

/// Named colours. Each has one base RGB far from the others, so that a
/// colour word always means something visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    White,
    Grey,
    Black,
    Red,
    Blue,
    Green,
    Orange,
    Yellow,
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::White,
        Colour::Grey,
        Colour::Black,
        Colour::Red,
        Colour::Blue,
        Colour::Green,
        Colour::Orange,
        Colour::Yellow,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Colour::White => "white",
            Colour::Grey => "grey",
            Colour::Black => "black",
            Colour::Red => "red",
            Colour::Blue => "blue",
            Colour::Green => "green",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
        }
    }

    pub fn rgb(self) -> [f32; 3] {
        match self {
            Colour::White => [234.0, 234.0, 228.0],
            Colour::Grey => [138.0, 140.0, 142.0],
            Colour::Black => [34.0, 34.0, 38.0],
            Colour::Red => [186.0, 50.0, 42.0],
            Colour::Blue => [46.0, 92.0, 184.0],
            Colour::Green => [52.0, 146.0, 70.0],
            Colour::Orange => [226.0, 128.0, 40.0],
            Colour::Yellow => [230.0, 200.0, 56.0],
        }
    }
}

/// The size class an object was drawn in. The bands leave gaps between
/// them, so "small" and "large" are never borderline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizeBand {
    Small,
    Medium,
    Large,
}

/// What the generator knows about a category.
#[derive(Debug, Clone, Copy)]
pub struct CategoryInfo {
    /// The RISORS name (annotation `name`).
    name: &'static str,
    /// Nouns for sentences; the first is the RISORS name, the others are
    /// occasional synonyms ("tank", "car", "plane", "boat").
    pub nouns: &'static [&'static str],
    /// Colours objects of this category come in.
    pub colours: &'static [Colour],
    /// Range of the characteristic length at 256 px (diameter, length,
    /// rotor span, height; a bridge's deck width).
    pub length: (f32, f32),
    /// Whether the range is wide enough for "small" / "large".
    pub sizable: bool,
    /// Most objects of this category in one image.
    pub max_count: usize,
    /// Relative frequency when planning a scene.
    pub weight: f32,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::StorageTank,
        Category::Vehicle,
        Category::Airplane,
        Category::Ship,
        Category::Bridge,
        Category::TennisCourt,
        Category::BasketballCourt,
        Category::GroundTrackField,
        Category::Windmill,
        Category::Chimney,
    ];

    pub fn info(self) -> CategoryInfo {
        use Colour::*;
        let (name, nouns, colours, length, sizable, max_count, weight): (
            _,
            &'static [&'static str],
            &'static [Colour],
            _,
            _,
            _,
            _,
        ) = match self {
            Category::StorageTank => (
                "storage tank",
                &["storage tank", "tank"],
                &[White, Grey, Red],
                (22.0, 64.0),
                true,
                3,
                1.2,
            ),
            Category::Vehicle => (
                "vehicle",
                &["vehicle", "car"],
                &[White, Black, Red, Blue],
                (28.0, 36.0),
                false,
                4,
                1.2,
            ),
            Category::Airplane => (
                "airplane",
                &["airplane", "plane"],
                &[White, Grey],
                (44.0, 92.0),
                true,
                3,
                1.0,
            ),
            Category::Ship => (
                "ship",
                &["ship", "boat"],
                &[White, Grey, Red],
                (56.0, 104.0),
                true,
                3,
                1.0,
            ),
            Category::Bridge => ("bridge", &["bridge"], &[Grey, White, Red], (14.0, 22.0), false, 1, 0.7),
            Category::TennisCourt => (
                "tennis court",
                &["tennis court"],
                &[Green, Blue, Red],
                (40.0, 76.0),
                true,
                3,
                1.0,
            ),
            Category::BasketballCourt => (
                "basketball court",
                &["basketball court"],
                &[Orange, Yellow, Grey],
                (40.0, 72.0),
                true,
                2,
                0.9,
            ),
            Category::GroundTrackField => (
                "ground track field",
                &["ground track field"],
                &[Red, Blue],
                (84.0, 116.0),
                false,
                1,
                0.6,
            ),
            Category::Windmill => ("windmill", &["windmill"], &[White], (48.0, 80.0), true, 3, 0.9),
            Category::Chimney => ("chimney", &["chimney"], &[Red, Grey, White], (44.0, 84.0), true, 3, 0.9),
        };
        CategoryInfo {
            name,
            nouns,
            colours,
            length,
            sizable,
            max_count,
            weight,
        }
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }
}
