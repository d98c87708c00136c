//! Where windows come from: a scene already in memory as 8-bit RGB, or a
//! GeoTIFF read window by window. A search reads each window when it
//! encodes it and drops it after, so a big raster is never held whole.

use std::borrow::Cow;
use std::io::{Read, Seek};

use super::error::WindowError;
use crate::geo::{
    apply_mappings, band_mappings, default_bands, BandMapping, GeoError, GeoRaster, Georef, Rendering, Stretch, Window,
};
use crate::preprocess::Rgb8Image;

/// A scene whose windows can be read one at a time.
pub trait WindowSource {
    fn width(&self) -> u32;
    fn height(&self) -> u32;
    /// The window's 8-bit RGB pixels.
    fn read(&mut self, window: Window) -> Result<Rgb8Image, WindowError>;
    /// Where the scene lies on Earth, for a georeferenced raster.
    fn georef(&self) -> Option<&Georef> {
        None
    }
}

/// A scene in memory.
#[derive(Debug, Clone)]
pub struct ImageSource<'a> {
    image: &'a Rgb8Image,
}

impl<'a> ImageSource<'a> {
    pub fn new(image: &'a Rgb8Image) -> Self {
        Self { image }
    }
}

impl WindowSource for ImageSource<'_> {
    fn width(&self) -> u32 {
        self.image.width
    }

    fn height(&self) -> u32 {
        self.image.height
    }

    fn read(&mut self, window: Window) -> Result<Rgb8Image, WindowError> {
        check_inside(window, self.width(), self.height())?;
        Ok(crop(self.image, window))
    }
}

/// A scene whose pixels are not at hand, only its size and where it lies:
/// every window must come from the feature cache (a scene pre-encoded
/// earlier, searched again by its id). Reading a window is
/// [`WindowError::NotCached`].
#[derive(Debug, Clone)]
pub struct CachedScene {
    pub width: u32,
    pub height: u32,
    pub georef: Option<Georef>,
}

impl WindowSource for CachedScene {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn read(&mut self, window: Window) -> Result<Rgb8Image, WindowError> {
        Err(WindowError::NotCached(window))
    }

    fn georef(&self) -> Option<&Georef> {
        self.georef.as_ref()
    }
}

/// A GeoTIFF read window by window with one stretch for the whole scene:
/// the same window of the scene gives the same bytes as the same pixels of
/// the whole raster read at once ([`crate::geo::read_rgb`]).
///
/// The `percentile` and `minmax` stretches need the statistics of whole
/// bands: [`GeoTiffSource::new`] reads the selected bands one at a time to
/// find them, holding one band of the scene at a time. `none` needs no
/// statistics: each window is checked as it is read (a value outside 0..255
/// is then an error naming the band when that window is reached).
pub struct GeoTiffSource<R: Read + Seek> {
    raster: GeoRaster<R>,
    bands: Vec<u16>,
    stretch: Stretch,
    /// `None` for `none` (identity, checked per window).
    mappings: Option<Vec<BandMapping>>,
}

impl<R: Read + Seek> GeoTiffSource<R> {
    /// Opens a search over `raster` with `bands` (1-based; default 1,2,3
    /// or band 1 as grey) and `stretch` (default: `none` for u8 rasters,
    /// `percentile` for every other type).
    pub fn new(
        mut raster: GeoRaster<R>,
        bands: Option<Vec<u16>>,
        stretch: Option<Stretch>,
    ) -> Result<Self, WindowError> {
        let info = raster.info().clone();
        let bands = bands.unwrap_or_else(|| default_bands(info.band_count));
        if !matches!(bands.len(), 1 | 3) {
            return Err(GeoError::InvalidBands(format!(
                "{} bands given ({bands:?}): RGB needs 3 bands, or 1 for grey",
                bands.len()
            ))
            .into());
        }
        if let Some(&band) = bands.iter().find(|&&b| b == 0 || b > info.band_count) {
            return Err(GeoError::BandOutOfRange {
                band,
                count: info.band_count,
            }
            .into());
        }
        let stretch = stretch.unwrap_or_else(|| Stretch::default_for(info.sample_type));
        let mappings = match stretch {
            Stretch::None => None,
            _ => Some(scene_mappings(&mut raster, &bands, stretch)?),
        };
        Ok(Self {
            raster,
            bands,
            stretch,
            mappings,
        })
    }

    /// The bands and stretch in use (for reports).
    pub fn rendering(&self) -> Rendering {
        Rendering {
            bands: self.bands.clone(),
            stretch: self.stretch,
            mappings: self
                .mappings
                .clone()
                .unwrap_or_else(|| vec![BandMapping::Identity; self.bands.len()]),
        }
    }
}

impl<R: Read + Seek> WindowSource for GeoTiffSource<R> {
    fn width(&self) -> u32 {
        self.raster.info().width
    }

    fn height(&self) -> u32 {
        self.raster.info().height
    }

    fn read(&mut self, window: Window) -> Result<Rgb8Image, WindowError> {
        let stack = self.raster.read_window(window, &self.bands)?;
        let nodata = self.raster.info().nodata;
        let mappings = match &self.mappings {
            Some(m) => Cow::Borrowed(m),
            None => Cow::Owned(band_mappings(&stack, nodata, Stretch::None)?),
        };
        Ok(apply_mappings(&stack, nodata, &mappings)?)
    }

    fn georef(&self) -> Option<&Georef> {
        Some(self.raster.georef())
    }
}

/// Each band's mapping over the whole scene, reading one band at a time.
fn scene_mappings<R: Read + Seek>(
    raster: &mut GeoRaster<R>,
    bands: &[u16],
    stretch: Stretch,
) -> Result<Vec<BandMapping>, WindowError> {
    let full = raster.full_window();
    let nodata = raster.info().nodata;
    let mut mappings: Vec<BandMapping> = Vec::with_capacity(bands.len());
    for (i, &band) in bands.iter().enumerate() {
        // A band given twice (e.g. grey as 1,1,1) is read once.
        if let Some(j) = bands[..i].iter().position(|&b| b == band) {
            mappings.push(mappings[j]);
            continue;
        }
        let stack = raster.read_window(full, &[band])?;
        mappings.extend(band_mappings(&stack, nodata, stretch)?);
    }
    Ok(mappings)
}

fn check_inside(window: Window, width: u32, height: u32) -> Result<(), WindowError> {
    let fits = |start: u32, len: u32, total: u32| u64::from(start) + u64::from(len) <= u64::from(total);
    if window.width == 0
        || window.height == 0
        || !fits(window.x, window.width, width)
        || !fits(window.y, window.height, height)
    {
        return Err(GeoError::InvalidWindow {
            x: window.x,
            y: window.y,
            width: window.width,
            height: window.height,
            raster_width: width,
            raster_height: height,
        }
        .into());
    }
    Ok(())
}

/// The pixels of `window` (which lies inside the image).
pub fn crop(image: &Rgb8Image, window: Window) -> Rgb8Image {
    let stride = image.width as usize * 3;
    let (x, w) = (window.x as usize * 3, window.width as usize * 3);
    let data = image
        .data
        .chunks(stride)
        .skip(window.y as usize)
        .take(window.height as usize)
        .flat_map(|row| &row[x..x + w])
        .copied()
        .collect();
    Rgb8Image {
        width: window.width,
        height: window.height,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> Rgb8Image {
        let data = (0..height)
            .flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, (x ^ y) as u8]))
            .collect();
        Rgb8Image { width, height, data }
    }

    #[test]
    fn an_image_source_crops_the_window() {
        let image = gradient(40, 30);
        let mut source = ImageSource::new(&image);
        let window = Window {
            x: 5,
            y: 7,
            width: 10,
            height: 3,
        };
        let cut = source.read(window).unwrap();
        assert_eq!((cut.width, cut.height, cut.data.len()), (10, 3, 90));
        assert_eq!(&cut.data[..3], &[5, 7, 5 ^ 7]);
        let last = &cut.data[87..];
        assert_eq!(last, &[14, 9, 14 ^ 9]);
        assert!(source.georef().is_none());
    }

    #[test]
    fn a_window_outside_the_image_is_an_error() {
        let image = gradient(40, 30);
        let mut source = ImageSource::new(&image);
        let err = source
            .read(Window {
                x: 35,
                y: 0,
                width: 10,
                height: 10,
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("does not lie inside the 40x30 raster"),
            "{err}"
        );
    }
}
