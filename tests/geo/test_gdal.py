#!/usr/bin/env python3
"""rsam's GeoTIFF input and georeferenced outputs against GDAL itself.

GDAL (Debian's gdal-bin + python3-gdal) writes the test rasters (striped and
tiled, every compression and sample type, nodata, UTM north / south, Web
Mercator, WGS 84, PixelIsPoint, a rotated transform, a COG, a BigTIFF) and
reads what `rsam geo` makes of them:

- the stretched RGB equals numpy's version of the stretch issue 16 defines
  (percentile 2 / 98 with method="lower" / "higher", minmax, none);
- the mask GeoTIFF's size, values, compression, transform and CRS as GDAL
  reads them;
- `ogrinfo` reads the GeoJSON and its CRS; OGR finds every polygon valid
  with counter-clockwise exteriors; `gdal_rasterize` of the GeoJSON with the
  raster's transform gives back exactly the mask, and the polygons cover
  exactly what GDAL's own polygonize covers;
- WGS 84 output equals GDAL / PROJ's transform of the same vertices within
  1e-7 degrees;
- map <-> pixel conversion equals GDAL's (inverse) geotransform;
- bad input gives a clear error and exit status 1.

    /usr/bin/python3 tests/geo/test_gdal.py --rsam target/debug/rsam
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from osgeo import gdal, ogr, osr

gdal.UseExceptions()
ogr.UseExceptions()

RSAM = None
TMP = None

NUMPY = {
    gdal.GDT_Byte: np.uint8,
    gdal.GDT_UInt16: np.uint16,
    gdal.GDT_Int16: np.int16,
    gdal.GDT_UInt32: np.uint32,
    gdal.GDT_Int32: np.int32,
    gdal.GDT_Float32: np.float32,
    gdal.GDT_Float64: np.float64,
}

UTM33N = [500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0]


def path(name):
    return os.path.join(TMP, name)


def rsam(*args, ok=True):
    """Runs `rsam geo ...`; returns the parsed JSON line, or (status, stderr)."""
    run = subprocess.run([RSAM, "geo", *args], capture_output=True, text=True, timeout=120)
    if not ok:
        return run.returncode, run.stderr.strip()
    if run.returncode != 0:
        raise AssertionError(f"rsam geo {' '.join(args)} failed ({run.returncode}): {run.stderr}")
    return json.loads(run.stdout)


def srs_of(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_raster(name, bands, gdal_type, options=(), epsg=32633, transform=UTM33N, nodata=None, point=False):
    """A GeoTIFF of the given band arrays; returns its path."""
    height, width = bands[0].shape
    ds = gdal.GetDriverByName("GTiff").Create(path(name), width, height, len(bands), gdal_type, list(options))
    if point:
        ds.SetMetadataItem("AREA_OR_POINT", "Point")
    if transform is not None:
        ds.SetGeoTransform(transform)
    if epsg is not None:
        ds.SetSpatialRef(srs_of(epsg))
    for i, band in enumerate(bands):
        ds.GetRasterBand(i + 1).WriteArray(band)
        if nodata is not None:
            ds.GetRasterBand(i + 1).SetNoDataValue(nodata)
    ds = None
    return path(name)


def read_band(name, index):
    ds = gdal.Open(name)  # GDAL 3.6: a band dies with its dataset, keep it
    return ds.GetRasterBand(index).ReadAsArray()


def read_png(png):
    ds = gdal.Open(png)
    return np.stack([ds.GetRasterBand(i + 1).ReadAsArray() for i in range(ds.RasterCount)], axis=-1)


def write_mask_png(name, mask):
    mem = gdal.GetDriverByName("MEM").Create("", mask.shape[1], mask.shape[0], 1, gdal.GDT_Byte)
    mem.GetRasterBand(1).WriteArray((mask != 0).astype(np.uint8) * 255)
    gdal.GetDriverByName("PNG").CreateCopy(path(name), mem)
    return path(name)


def stretch_reference(band, nodata, mode):
    """Issue 16's stretch of one band, in numpy."""
    values = band.astype(np.float64)
    valid = ~np.isnan(values)
    if nodata is not None and not np.isnan(nodata):
        valid &= band != np.array(nodata).astype(band.dtype)
    out = np.zeros(band.shape, np.uint8)
    v = values[valid]
    if v.size == 0:
        return out
    if mode == "none":
        mapped = np.floor(values + 0.5)
    else:
        if mode == "percentile":
            lo = np.percentile(v, 2, method="lower")
            hi = np.percentile(v, 98, method="higher")
        else:
            lo, hi = v.min(), v.max()
        if hi == lo:
            return out
        with np.errstate(invalid="ignore"):
            mapped = np.floor((values - lo) * 255 / (hi - lo) + 0.5)
    out[valid] = np.clip(mapped, 0, 255)[valid]
    return out


def random_bands(rng, gdal_type, count, shape=(45, 61)):
    dtype = NUMPY[gdal_type]
    if np.issubdtype(dtype, np.floating):
        return [(rng.normal(0, 1000, shape) * (1 + i)).astype(dtype) for i in range(count)]
    info = np.iinfo(dtype)
    # Skewed values, so the percentiles differ from min / max.
    return [
        np.clip(rng.gamma(2.0, (info.max - max(info.min, -info.max)) / 40, shape) + max(info.min, -20000), info.min,
                info.max).astype(dtype)
        for _ in range(count)
    ]


class Stretch(unittest.TestCase):
    def check(self, tif, bands, mode, nodata):
        png = path("out.png")
        args = ["stretch", "--image", tif, "--png-out", png, "--bands", ",".join(map(str, bands))]
        if mode is not None:
            args += ["--stretch", mode]
        summary = rsam(*args)
        got = read_png(png)
        ds = gdal.Open(tif)
        effective = summary["rendering"]["stretch"]
        channels = bands if len(bands) == 3 else bands * 3
        for c, b in enumerate(channels):
            ref = stretch_reference(ds.GetRasterBand(b).ReadAsArray(), nodata, effective)
            np.testing.assert_array_equal(got[:, :, c], ref, err_msg=f"{tif} band {b} {effective}")
        return summary

    def test_every_type_layout_and_compression(self):
        rng = np.random.default_rng(16)
        layouts = {
            "striped-pixel": ["BLOCKYSIZE=7", "INTERLEAVE=PIXEL"],
            "tiled-band": ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=32", "INTERLEAVE=BAND"],
        }
        compressions = ["NONE", "DEFLATE", "LZW", "PACKBITS"]
        for gdal_type in NUMPY:
            for layout, options in layouts.items():
                for compression in compressions:
                    name = f"{gdal.GetDataTypeName(gdal_type)}-{layout}-{compression}.tif"
                    bands = random_bands(rng, gdal_type, 3)
                    nodata = float(bands[0][3, 4])
                    tif = write_raster(name, bands, gdal_type, options + [f"COMPRESS={compression}"], nodata=nodata)
                    with self.subTest(name):
                        mode = "minmax" if compression == "LZW" else None
                        self.check(tif, [3, 1, 2], mode, nodata)

    def test_predictors_bigtiff_and_cog(self):
        rng = np.random.default_rng(2)
        u16 = random_bands(rng, gdal.GDT_UInt16, 4)
        f32 = random_bands(rng, gdal.GDT_Float32, 3)
        f32[1][5:9, 2:30] = np.nan
        cases = [
            ("pred2.tif", u16, gdal.GDT_UInt16, ["COMPRESS=LZW", "PREDICTOR=2", "TILED=YES"]),
            ("pred3.tif", f32, gdal.GDT_Float32, ["COMPRESS=DEFLATE", "PREDICTOR=3"]),
            ("big.tif", u16, gdal.GDT_UInt16, ["BIGTIFF=YES", "COMPRESS=DEFLATE", "INTERLEAVE=BAND"]),
            ("pred3-lzw-tiles.tif", f32, gdal.GDT_Float32, ["COMPRESS=LZW", "PREDICTOR=3", "TILED=YES",
                                                            "BLOCKXSIZE=16", "BLOCKYSIZE=16"]),
            ("be-lzw-pred2.tif", u16, gdal.GDT_UInt16, ["COMPRESS=LZW", "PREDICTOR=2", "ENDIANNESS=BIG", "TILED=YES",
                                                        "BLOCKXSIZE=32", "BLOCKYSIZE=16", "INTERLEAVE=BAND"]),
            # (GDAL 3.6 does not read back its own big-endian PREDICTOR=3 files.)
            ("be-lzw.tif", f32, gdal.GDT_Float32, ["COMPRESS=LZW", "ENDIANNESS=BIG", "TILED=YES", "BLOCKXSIZE=16",
                                                   "BLOCKYSIZE=16"]),
            ("be-deflate.tif", f32, gdal.GDT_Float32, ["COMPRESS=DEFLATE", "ENDIANNESS=BIG", "TILED=YES",
                                                       "BLOCKXSIZE=16", "BLOCKYSIZE=16"]),
            ("u8-lzw-pred2.tif", [b.astype(np.uint8) for b in u16], gdal.GDT_Byte,
             ["COMPRESS=LZW", "PREDICTOR=2", "TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]),
        ]
        for name, bands, t, options in cases:
            with self.subTest(name):
                self.check(write_raster(name, bands, t, options), [1, 2, 3], None, None)
        src = gdal.Open(write_raster("cog-src.tif", u16, gdal.GDT_UInt16, nodata=0))
        gdal.Translate(path("cog.tif"), src, format="COG", creationOptions=["COMPRESS=DEFLATE", "BLOCKSIZE=128"])
        self.check(path("cog.tif"), [4, 2, 1], "percentile", 0)

    def test_u16_four_bands_with_nodata_and_bands_321(self):
        rng = np.random.default_rng(321)
        bands = random_bands(rng, gdal.GDT_UInt16, 4, (120, 97))
        for b in bands:
            b[:10, :] = 65535  # a nodata border
        tif = write_raster("u16x4.tif", bands, gdal.GDT_UInt16, ["TILED=YES", "COMPRESS=DEFLATE"], nodata=65535)
        summary = self.check(tif, [3, 2, 1], None, 65535)
        self.assertEqual(summary["rendering"]["stretch"], "percentile")
        self.assertEqual(summary["rendering"]["bands"], [3, 2, 1])

    def test_u8_is_used_as_is_and_grey_is_one_band(self):
        rng = np.random.default_rng(8)
        bands = [rng.integers(0, 256, (30, 40), dtype=np.uint8) for _ in range(3)]
        tif = write_raster("u8.tif", bands, gdal.GDT_Byte, ["PHOTOMETRIC=RGB"])
        self.assertEqual(self.check(tif, [1, 2, 3], None, None)["rendering"]["stretch"], "none")
        self.check(tif, [2], "minmax", None)

    def test_stretch_none_of_16_bit_values_is_an_error(self):
        bands = [np.full((4, 4), 300, np.uint16)]
        tif = write_raster("u16-300.tif", bands, gdal.GDT_UInt16)
        status, err = rsam("stretch", "--image", tif, "--png-out", path("x.png"), "--stretch", "none", "--bands", "1",
                           ok=False)
        self.assertEqual(status, 1)
        self.assertIn("stretch none: band 1 holds the value 300, outside 0..255", err)


# case: (EPSG, geotransform, PixelIsPoint)
CASES = {
    "utm33n": (32633, UTM33N, False),
    "utm33s": (32733, [300000.0, 5.0, 0.0, 7000000.0, 0.0, -5.0], False),
    "mercator": (3857, [1669792.36, 30.0, 0.0, 5621521.48, 0.0, -30.0], False),
    "wgs84": (4326, [12.5, 0.0001, 0.0, 45.25, 0.0, -0.0001], False),
    "point": (32633, UTM33N, True),
    "rotated": (32633, [500000.0, 8.0, 2.0, 4100000.0, 1.5, -8.0], False),
}


def geo_raster(case, shape=(40, 50)):
    """An all-zero u8 raster georeferenced as CASES[case] says."""
    epsg, transform, point = CASES[case]
    return write_raster(f"geo-{case}.tif", [np.zeros(shape, np.uint8)], gdal.GDT_Byte, ["COMPRESS=DEFLATE"],
                        epsg=epsg, transform=transform, point=point)


class Georeferencing(unittest.TestCase):

    def test_transform_and_epsg_as_gdal_reads_them(self):
        for case, (epsg, _, _) in CASES.items():
            with self.subTest(case):
                tif = geo_raster(case)
                info = rsam("info", "--image", tif)
                gt = gdal.Open(tif).GetGeoTransform()
                np.testing.assert_allclose(info["transform"], gt, rtol=0, atol=1e-9)
                self.assertEqual(info["epsg"], epsg)
                self.assertEqual(info["projected"], epsg != 4326)

    def test_mask_geotiff_as_gdal_reads_it(self):
        rng = np.random.default_rng(5)
        for case in CASES:
            with self.subTest(case):
                tif = geo_raster(case)
                mask = rng.random((40, 50)) < 0.3
                out = path(f"mask-{case}.tif")
                rsam("mask-tiff", "--image", tif, "--mask", write_mask_png("m.png", mask), "--out", out)
                src, got = gdal.Open(tif), gdal.Open(out)
                self.assertEqual((got.RasterXSize, got.RasterYSize, got.RasterCount), (50, 40, 1))
                band = got.GetRasterBand(1)
                self.assertEqual(band.DataType, gdal.GDT_Byte)
                np.testing.assert_array_equal(band.ReadAsArray(), mask.astype(np.uint8) * 255)
                self.assertEqual(got.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION"), "DEFLATE")
                np.testing.assert_allclose(got.GetGeoTransform(), src.GetGeoTransform(), rtol=0, atol=1e-9)
                self.assertTrue(got.GetSpatialRef().IsSame(src.GetSpatialRef()), case)

    def test_map_and_pixel_coordinates_like_gdal(self):
        for case in ["utm33n", "rotated", "point"]:
            tif = geo_raster(case)
            gt = gdal.Open(tif).GetGeoTransform()
            inverse = gdal.InvGeoTransform(gt)
            for col, row in [(0.5, 0.5), (17.25, 30.75), (49.0, 39.0)]:
                x, y = gdal.ApplyGeoTransform(gt, col, row)
                got = rsam("coords", "--image", tif, "--map", f"{x!r},{y!r}")
                want = gdal.ApplyGeoTransform(inverse, x, y)
                self.assertAlmostEqual(got["col"], want[0], delta=1e-7)
                self.assertAlmostEqual(got["row"], want[1], delta=1e-7)
                back = rsam("coords", "--image", tif, "--pixel", f"{col},{row}")
                self.assertAlmostEqual(back["x"], x, delta=1e-7)
                self.assertAlmostEqual(back["y"], y, delta=1e-7)
        plain = write_raster("plain.tif", [np.zeros((4, 4), np.uint8)], gdal.GDT_Byte, epsg=None, transform=None)
        status, err = rsam("coords", "--image", plain, "--map", "1,2", ok=False)
        self.assertEqual(status, 1)
        self.assertIn("map coordinates: the raster has no georeferencing", err)


def blob_mask(rng, shape):
    """Blobs with holes, islands in holes, diagonal touches and border pixels."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(3, 12)
        d = np.hypot(yy - cy, xx - cx)
        mask |= d < r
        mask &= ~((d < r * 0.5) & (d > r * 0.2))
    mask ^= rng.random(shape) < 0.04
    mask[0, :5] = True
    mask[10, 10] = mask[11, 11] = True
    mask[10, 11] = mask[11, 10] = False
    return mask


class GeoJson(unittest.TestCase):
    def vectorize(self, tif, mask, *extra):
        out = path("out.geojson")
        rsam("vectorize", "--image", tif, "--mask", write_mask_png("v.png", mask), "--geojson-out", out,
             "--text", "the lake", *extra)
        return out

    def test_ogrinfo_crs_validity_and_rasterize_round_trip(self):
        rng = np.random.default_rng(7)
        for case in ["utm33n", "utm33s", "mercator", "rotated", "point"]:
            with self.subTest(case):
                epsg, _, _ = CASES[case]
                tif = geo_raster(case, (64, 80))
                mask = blob_mask(rng, (64, 80))
                out = self.vectorize(tif, mask)

                listing = subprocess.run(["ogrinfo", "-ro", "-al", "-so", out], capture_output=True, text=True,
                                         check=True).stdout
                self.assertIn("Feature Count: 1", listing)
                self.assertIn(f'ID["EPSG",{epsg}]', listing)

                ds = ogr.Open(out)
                layer = ds.GetLayer(0)
                self.assertTrue(layer.GetSpatialRef().IsSame(srs_of(epsg)), case)
                feature = layer.GetNextFeature()
                self.assertEqual(feature.GetField("text"), "the lake")
                self.assertEqual(feature.GetField("area_px"), int(mask.sum()))
                geometry = feature.GetGeometryRef()
                self.assertTrue(geometry.IsValid(), case)
                self.assertEqual(geometry.GetGeometryName(), "MULTIPOLYGON")
                for polygon in geometry:
                    self.assertGreater(signed_area(polygon.GetGeometryRef(0)), 0, "exterior counter-clockwise")
                    for i in range(1, polygon.GetGeometryCount()):
                        self.assertLess(signed_area(polygon.GetGeometryRef(i)), 0, "holes clockwise")
                gt = gdal.Open(tif).GetGeoTransform()
                self.assertAlmostEqual(feature.GetField("area"), mask.sum() * abs(gt[1] * gt[5] - gt[2] * gt[4]))

                # GDAL's rasterisation (pixel-centre rule) of the GeoJSON.
                target = write_raster("burn.tif", [np.zeros((64, 80), np.uint8)], gdal.GDT_Byte, epsg=epsg,
                                      transform=list(gt))
                subprocess.run(["gdal_rasterize", "-q", "-burn", "1", out, target], check=True)
                burnt = read_band(target, 1)
                np.testing.assert_array_equal(burnt, mask.astype(np.uint8), err_msg=case)

                # The same area as GDAL's own polygonize (4-connected).
                mem = gdal.GetDriverByName("MEM").Create("", 80, 64, 1, gdal.GDT_Byte)
                mem.SetGeoTransform(gt)
                mem.GetRasterBand(1).WriteArray(mask.astype(np.uint8))
                vec = ogr.GetDriverByName("Memory").CreateDataSource("")
                polys = vec.CreateLayer("p")
                polys.CreateField(ogr.FieldDefn("v", ogr.OFTInteger))
                gdal.Polygonize(mem.GetRasterBand(1), mem.GetRasterBand(1), polys, 0)
                theirs = ogr.Geometry(ogr.wkbMultiPolygon)
                for f in polys:
                    theirs = theirs.Union(f.GetGeometryRef())
                self.assertAlmostEqual(theirs.SymDifference(geometry).GetArea(), 0.0, delta=1e-6 * theirs.GetArea())

    def test_wgs84_vertices_match_gdal_within_1e_7_degrees(self):
        rng = np.random.default_rng(84)
        for case in ["utm33n", "utm33s", "mercator", "wgs84", "rotated"]:
            with self.subTest(case):
                epsg, _, _ = CASES[case]
                tif = geo_raster(case, (64, 80))
                mask = blob_mask(rng, (64, 80))
                with open(self.vectorize(tif, mask)) as f:
                    native = json.load(f)
                with open(self.vectorize(tif, mask, "--wgs84")) as f:
                    wgs84 = json.load(f)
                self.assertNotIn("crs", wgs84)
                transform = osr.CoordinateTransformation(srs_of(epsg), srs_of(4326))
                ours = np.array(flatten(wgs84["features"][0]["geometry"]["coordinates"]))
                src = np.array(flatten(native["features"][0]["geometry"]["coordinates"]))
                # Vertex by vertex: both outputs list the same rings in the same order.
                theirs = np.array([transform.TransformPoint(x, y)[:2] for x, y in src])
                self.assertEqual(ours.shape, theirs.shape)
                np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)
                listing = subprocess.run(["ogrinfo", "-ro", "-al", "-so", path("out.geojson")], capture_output=True,
                                         text=True, check=True).stdout
                self.assertIn("WGS 84", listing)

    def test_empty_mask_and_several_results(self):
        tif = geo_raster("utm33n")
        empty = np.zeros((40, 50), bool)
        one = np.zeros((40, 50), bool)
        one[5:9, 7:12] = True
        out = path("two.geojson")
        rsam("vectorize", "--image", tif, "--mask", write_mask_png("e.png", empty), "--mask",
             write_mask_png("o.png", one), "--geojson-out", out)
        ds = ogr.Open(out)  # GDAL 3.6: the layer dies with its dataset
        layer = ds.GetLayer(0)
        self.assertEqual(layer.GetFeatureCount(), 2)
        first, second = layer.GetNextFeature(), layer.GetNextFeature()
        self.assertIsNone(first.GetGeometryRef())
        self.assertEqual(second.GetGeometryRef().GetGeometryName(), "POLYGON")
        self.assertEqual(second.GetField("area"), 20 * 100.0)

    def test_unsupported_crs_for_wgs84_is_an_error(self):
        # A projected CRS without an EPSG code (user-defined GeoKeys).
        srs = osr.SpatialReference()
        srs.SetProjCS("custom")
        srs.SetWellKnownGeogCS("WGS84")
        srs.SetTM(10.0, 11.0, 0.9, 1000.0, 2000.0)
        ds = gdal.GetDriverByName("GTiff").Create(path("custom.tif"), 8, 8, 1, gdal.GDT_Byte)
        ds.SetGeoTransform(UTM33N)
        ds.SetSpatialRef(srs)
        ds = None
        mask = np.ones((8, 8), bool)
        status, err = rsam("vectorize", "--image", path("custom.tif"), "--mask", write_mask_png("c.png", mask),
                           "--geojson-out", path("c.geojson"), "--wgs84", ok=False)
        self.assertEqual(status, 1)
        self.assertIn("user-defined (no EPSG code), so it cannot go to WGS 84", err)


def signed_area(ring):
    """Shoelace area of an OGR ring: positive when counter-clockwise."""
    p = np.array(ring.GetPoints())[:, :2]
    return 0.5 * float(np.sum(p[:-1, 0] * p[1:, 1] - p[1:, 0] * p[:-1, 1]))


def flatten(coordinates):
    """Every vertex of a Polygon / MultiPolygon, closing vertices dropped."""
    if isinstance(coordinates[0][0], (int, float)):
        return [tuple(p) for p in coordinates[:-1]]
    return [p for part in coordinates for p in flatten(part)]


MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "rsam-tiny")


def segment(*args):
    """Runs `rsam segment` with the tiny fixture model; returns its JSON line."""
    run = subprocess.run([RSAM, "segment", "--model", MODEL, *args], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise AssertionError(f"rsam segment {' '.join(args)} failed ({run.returncode}): {run.stderr}")
    return json.loads(run.stdout)


def write_png(name, rgb):
    mem = gdal.GetDriverByName("MEM").Create("", rgb.shape[1], rgb.shape[0], 3, gdal.GDT_Byte)
    for i in range(3):
        mem.GetRasterBand(i + 1).WriteArray(rgb[:, :, i])
    gdal.GetDriverByName("PNG").CreateCopy(path(name), mem)
    return path(name)


class Segment(unittest.TestCase):
    """`rsam segment` on a GDAL-written 4-band u16 UTM GeoTIFF with nodata: the model sees the
    bands GDAL holds, stretched as issue 16 says; the mask GeoTIFF and the
    GeoJSON land on the raster's grid as GDAL reads them."""

    def test_segment_a_gdal_geotiff(self):
        rng = np.random.default_rng(16)
        bands = random_bands(rng, gdal.GDT_UInt16, 4, (48, 64))
        for band in bands:
            band[band == 0] = 1
            band[40:, :12] = 0  # a nodata corner, left out of the percentiles
        tif = write_raster("scene.tif", bands, gdal.GDT_UInt16, ["COMPRESS=DEFLATE", "TILED=YES",
                                                                   "BLOCKXSIZE=16", "BLOCKYSIZE=16"], nodata=0)
        mask_tif, geojson = path("seg.tif"), path("seg.geojson")
        line = segment("--image", tif, "--bands", "4,3,2", "--point", "30,20,1", "--mask-out", mask_tif,
                       "--geojson-out", geojson)
        self.assertTrue(line["georeferenced"])
        self.assertTrue(0 < line["area"] < 48 * 64, line["area"])

        # The same pixels as a PNG of the numpy stretch of bands 4, 3, 2.
        rgb = np.stack([stretch_reference(bands[b - 1], 0, "percentile") for b in (4, 3, 2)], axis=-1)
        plain = segment("--image", write_png("scene.png", rgb), "--point", "30,20,1")
        self.assertEqual(plain["rle"], line["rle"])

        # GDAL reads the mask GeoTIFF on the raster's grid.
        ds = gdal.Open(mask_tif)
        self.assertEqual(ds.GetGeoTransform(), tuple(UTM33N))
        self.assertTrue(ds.GetSpatialRef().IsSame(srs_of(32633)))
        mask = ds.GetRasterBand(1).ReadAsArray()
        self.assertEqual(int((mask > 0).sum()), line["area"])

        # GDAL burns the GeoJSON back into exactly that mask.
        target = write_raster("burn_seg.tif", [np.zeros((48, 64), np.uint8)], gdal.GDT_Byte)
        subprocess.run(["gdal_rasterize", "-q", "-burn", "1", geojson, target], check=True)
        np.testing.assert_array_equal(read_band(target, 1), (mask > 0).astype(np.uint8))

        # A click in map units, placed with GDAL's own geotransform.
        x, y = gdal.ApplyGeoTransform(list(UTM33N), 30, 20)
        by_map = segment("--image", tif, "--bands", "4,3,2", "--coords", "map", "--point", f"{x},{y},1")
        self.assertEqual(by_map["rle"], line["rle"])


class Errors(unittest.TestCase):
    def test_bad_input_is_a_clear_error(self):
        u16 = write_raster("e.tif", [np.ones((20, 30), np.uint16)] * 2, gdal.GDT_UInt16, ["COMPRESS=DEFLATE"])
        with open(u16, "rb") as f:
            data = f.read()
        with open(path("cut.tif"), "wb") as f:
            f.write(data[: len(data) // 2])
        ds = gdal.GetDriverByName("GTiff").Create(path("c.tif"), 4, 4, 1, gdal.GDT_CFloat32)
        ds = None
        cases = [
            (["stretch", "--image", u16, "--bands", "3", "--png-out", path("x.png")],
             "band 3 is out of range: the raster has 2 band(s), numbered from 1"),
            (["stretch", "--image", u16, "--png-out", path("x.png"), "--max-pixels", "100"],
             "raster is 30x20 = 600 pixels, over the limit of 100 pixels"),
            (["stretch", "--image", path("c.tif"), "--png-out", path("x.png")],
             "unsupported sample format: 64-bit complex floating point samples (SampleFormat 6)"),
            (["stretch", "--image", path("cut.tif"), "--png-out", path("x.png")], "truncated TIFF"),
            (["stretch", "--image", u16, "--png-out", path("x.png"), "--stretch", "gamma"],
             "\"gamma\" is not one of percentile, minmax, none"),
            (["vectorize", "--image", u16, "--mask", write_mask_png("small.png", np.ones((3, 3), bool)),
              "--geojson-out", path("x.geojson")], "mask is 3x3 but the raster is 30x20"),
        ]
        for args, message in cases:
            with self.subTest(args[0] + " " + message):
                status, err = rsam(*args, ok=False)
                self.assertIn(status, (1, 2))
                self.assertIn(message, err)
                self.assertNotIn("panicked", err)


def main():
    global RSAM, TMP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rsam", required=True, help="the rsam binary")
    args, rest = parser.parse_known_args()
    RSAM = os.path.abspath(args.rsam)
    print(f"GDAL {gdal.__version__}, numpy {np.__version__}, rsam {RSAM}")
    with tempfile.TemporaryDirectory(prefix="rsam-geo-") as tmp:
        TMP = tmp
        result = unittest.main(argv=[sys.argv[0], *rest], exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
