#!/usr/bin/env python3
"""Writes the small GeoTIFF fixtures of tests/geo.rs with GDAL (Debian's
python3-gdal): every layout the reader supports, each sample type, with
pixel values given by a formula the Rust test recomputes.

    /usr/bin/python3 tests/geo/make_fixtures.py tests/fixtures/geo

value(x, y, band) = f_type((x + W * y) * 3 + band), band 1-based; f_type
is in FORMULA. Each file is read back with GDAL and checked against the
formula before it is kept.
"""

import json
import os
import sys

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()

W, H = 37, 23

FORMULA = {
    "u8": lambda v: v % 256,
    "u16": lambda v: v * 25,
    "i16": lambda v: v * 10 - 12000,
    "u32": lambda v: v * 1000003,
    "i32": lambda v: v * -100003,
    "f32": lambda v: v * 0.5 - 300.25,
    "f64": lambda v: v * 1e-3 - 1.5,
}

GDAL_TYPE = {
    "u8": gdal.GDT_Byte,
    "u16": gdal.GDT_UInt16,
    "i16": gdal.GDT_Int16,
    "u32": gdal.GDT_UInt32,
    "i32": gdal.GDT_Int32,
    "f32": gdal.GDT_Float32,
    "f64": gdal.GDT_Float64,
}

NUMPY_TYPE = {
    "u8": np.uint8,
    "u16": np.uint16,
    "i16": np.int16,
    "u32": np.uint32,
    "i32": np.int32,
    "f32": np.float32,
    "f64": np.float64,
}

# name: (type, bands, creation options, EPSG or None, geotransform or None, point)
FIXTURES = {
    "u16_tiled_deflate_pixel": ("u16", 4, ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "COMPRESS=DEFLATE",
                                           "PREDICTOR=2", "INTERLEAVE=PIXEL"], 32633,
                                [500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0], False),
    "i16_striped_lzw_band": ("i16", 3, ["BLOCKYSIZE=5", "COMPRESS=LZW", "INTERLEAVE=BAND"], 3857,
                             [1000000.0, 30.0, 0.0, 6000000.0, 0.0, -30.0], True),
    "u8_striped_packbits_rgb": ("u8", 3, ["COMPRESS=PACKBITS", "PHOTOMETRIC=RGB"], 4326,
                                [12.5, 0.001, 0.0, 45.25, 0.0, -0.001], False),
    "f32_tiled_float_predictor_band": ("f32", 2, ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=32", "COMPRESS=DEFLATE",
                                                  "PREDICTOR=3", "INTERLEAVE=BAND"], 32733,
                                       [300000.0, 2.0, 0.0, 7000000.0, 0.0, -2.0], False),
    "u32_striped_deflate": ("u32", 1, ["COMPRESS=DEFLATE", "BLOCKYSIZE=7"], 32633,
                            [500000.0, 1.0, 0.0, 0.0, 0.0, -1.0], False),
    "i32_tiled_none": ("i32", 2, ["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=16"], None,
                       [0.0, 1.0, 0.0, 0.0, 0.0, -1.0], False),
    "f64_striped_lzw_bigtiff": ("f64", 1, ["COMPRESS=LZW", "BIGTIFF=YES"], 32633,
                                [500000.0, 0.5, 0.0, 4100000.0, 0.0, -0.5], False),
    "u16_rotated": ("u16", 1, ["COMPRESS=DEFLATE"], 32633,
                    [500000.0, 8.0, 2.0, 4100000.0, 1.5, -8.0], False),
    "u8_plain": ("u8", 1, [], None, None, False),
    # (GDAL 3.6 itself does not read back big-endian files with PREDICTOR=3.)
    "f32_tiled_lzw_float_predictor": ("f32", 2, ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "COMPRESS=LZW",
                                                 "PREDICTOR=3"], 32633,
                                      [500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0], False),
    "i16_tiled_lzw_predictor_big_endian": ("i16", 3, ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16", "COMPRESS=LZW",
                                                      "PREDICTOR=2", "ENDIANNESS=BIG"], 32633,
                                           [500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0], False),
    "u16_rgb_nir_pixel": ("u16", 4, ["PHOTOMETRIC=RGB", "ALPHA=NO"], 32633,
                          [500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0], False),
}

NODATA = {"u16_tiled_deflate_pixel": 400.0, "f32_tiled_float_predictor_band": float("nan")}


def values(kind, bands):
    v = (np.arange(W)[None, :] + W * np.arange(H)[:, None]) * 3
    return [np.asarray(FORMULA[kind](v + b), dtype=NUMPY_TYPE[kind]) for b in range(1, bands + 1)]


def write(path, kind, bands, options, epsg, transform, point):
    ds = gdal.GetDriverByName("GTiff").Create(path, W, H, bands, GDAL_TYPE[kind], options)
    if point:
        ds.SetMetadataItem("AREA_OR_POINT", "Point")
    if transform is not None:
        ds.SetGeoTransform(transform)
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetSpatialRef(srs)
    for i, band in enumerate(values(kind, bands)):
        ds.GetRasterBand(i + 1).WriteArray(band)
    name = os.path.splitext(os.path.basename(path))[0]
    if name in NODATA:
        for i in range(bands):
            ds.GetRasterBand(i + 1).SetNoDataValue(NODATA[name])
    ds = None


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    expected = {}
    for name, (kind, bands, options, epsg, transform, point) in FIXTURES.items():
        path = os.path.join(out_dir, name + ".tif")
        write(path, kind, bands, options, epsg, transform, point)
        ds = gdal.Open(path)
        for i, band in enumerate(values(kind, bands)):
            assert np.array_equal(ds.GetRasterBand(i + 1).ReadAsArray(), band), (name, i)
        srs = ds.GetSpatialRef()
        expected[name] = {
            "type": kind,
            "bands": bands,
            # GDAL's reading of the transform (PixelIsPoint already shifted).
            "transform": list(ds.GetGeoTransform()) if transform is not None else None,
            "epsg": int(srs.GetAuthorityCode(None)) if srs is not None else None,
            "nodata": None if name not in NODATA else (None if np.isnan(NODATA[name]) else NODATA[name]),
            "nodata_nan": name in NODATA and bool(np.isnan(NODATA[name])),
        }
    # The COG driver: tiled, an overview stored after the full-resolution image.
    src = gdal.GetDriverByName("MEM").CreateCopy("", gdal.Open(os.path.join(out_dir, "u16_tiled_deflate_pixel.tif")))
    src.BuildOverviews("NEAREST", [2])
    cog = os.path.join(out_dir, "u16_cog.tif")
    gdal.Translate(cog, src, format="COG", creationOptions=["COMPRESS=LZW", "OVERVIEWS=FORCE_USE_EXISTING"])
    written = gdal.Open(cog)  # keep the dataset alive while its band is used
    assert written.GetRasterBand(1).GetOverviewCount() == 1
    expected["u16_cog"] = dict(expected["u16_tiled_deflate_pixel"])
    # Files the reader must refuse with a clear error.
    ds = gdal.GetDriverByName("GTiff").Create(os.path.join(out_dir, "reject_zstd.tif"), 8, 8, 1, gdal.GDT_Byte,
                                              ["COMPRESS=ZSTD"])
    ds.GetRasterBand(1).Fill(7)
    ds = gdal.GetDriverByName("GTiff").Create(os.path.join(out_dir, "reject_cint16.tif"), 8, 8, 1, gdal.GDT_CInt16)
    ds.GetRasterBand(1).Fill(7)
    ds = None
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"width": W, "height": H, "fixtures": expected}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/geo")
