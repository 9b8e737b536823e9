using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Evaluation;

[TestClass]
public sealed class ImageAnomalyEvaluationTests
{
    private sealed class Row
    {
        public bool Label { get; set; }
        public float Score { get; set; }
        [VectorType(2, 3)]
        public float[] AnomalyMap { get; set; } = [];
        public string MaskPath { get; set; } = "";
    }

    private sealed class FlatRow
    {
        public bool Label { get; set; }
        public float Score { get; set; }
        [VectorType(6)]
        public float[] AnomalyMap { get; set; } = [];
        public string MaskPath { get; set; } = "";
    }

    private sealed class FloatLabelRow
    {
        public float Label { get; set; }
        public float Score { get; set; }
    }

    private static Row[] Rows(string folder)
    {
        // Mask 4×6, twice the map size: white 2×2 blocks at the top-left and bottom-right map pixels
        // (0,0) and (1,2) after nearest-neighbour resizing; they are not 8-adjacent → two regions.
        string mask = EvaluationTestImages.WritePng(Path.Combine(folder, "mask.png"), 4, 6,
            (y, x) => (y < 2 && x < 2) || (y >= 2 && x >= 4) ? ((byte)255, (byte)255, (byte)255) : ((byte)0, (byte)0, (byte)0));
        return
        [
            new Row { Label = false, Score = 0.2f, AnomalyMap = [0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f] },
            new Row { Label = true, Score = 0.9f, AnomalyMap = [0.9f, 0.1f, 0.1f, 0.1f, 0.1f, 0.8f], MaskPath = mask },
            new Row { Label = false, Score = 0.3f, AnomalyMap = [0.2f, 0.2f, 0.85f, 0.2f, 0.2f, 0.2f] },
        ];
    }

    [TestMethod]
    public void EvaluatesImageAndPixelMetrics()
    {
        string folder = EvaluationTestImages.NewFolder();
        try
        {
            var ml = new MLContext(0);
            var data = ml.Data.LoadFromEnumerable(Rows(folder));
            var m = ml.AnomalyDetection.EvaluateImageAnomalies(data);
            Assert.AreEqual(1.0, m.ImageAuroc, 1e-12);
            Assert.AreEqual(1.0, m.ImageF1Max, 1e-9);
            Assert.AreEqual(0.9, m.ImageF1Threshold, 1e-6);
            Assert.AreEqual(2, m.GoodImages);
            Assert.AreEqual(1, m.AnomalousImages);
            // Pixels: anomalous {0.9, 0.8}; good 10×0.1, 5×0.2, 1×0.85. 0.9 beats 16, 0.8 beats 15 → 31/32.
            Assert.AreEqual(31.0 / 32, m.PixelAuroc!.Value, 1e-12);
            // F1: 0.9 → 2/3; 0.85 → 1/2; 0.8 → P 2/3, R 1 → 0.8; 0.2 → 0.4.
            Assert.AreEqual(0.8, m.PixelF1Max!.Value, 1e-9);
            Assert.AreEqual(0.8, m.PixelF1Threshold!.Value, 1e-6);
            // PRO: (0,0) (0,.5) (1/16,.5) (1/16,1) (6/16,1) cut at .3: .03125 + .2375 = .26875, / .3.
            Assert.AreEqual(0.26875 / 0.3, m.Aupro!.Value, 1e-9);
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }

    [TestMethod]
    public void GrayscaleMasksAreResizedByNearestNeighbour()
    {
        string folder = EvaluationTestImages.NewFolder();
        try
        {
            // 4×4 gray mask, value 255 only at (1, 2) and 1 at (3, 0); resized to 2×2 the nearest source
            // pixels are (0,0) (0,2) (2,0) (2,2), none of them set; at 4×4 the mask is unchanged.
            string path = EvaluationTestImages.WriteGrayPng(Path.Combine(folder, "m.png"), 4, 4,
                (y, x) => (y, x) == (1, 2) ? (byte)255 : (y, x) == (3, 0) ? (byte)1 : (byte)0);
            var same = Microsoft.ML.Anomaly.Vision.Evaluation.ImagePixels.LoadMask(path, 4, 4, ImageAnomalyDetectorOptions.DefaultMaxImagePixels);
            CollectionAssert.AreEqual(new[] { 6, 12 }, Enumerable.Range(0, 16).Where(i => same[i]).ToArray());
            var half = Microsoft.ML.Anomaly.Vision.Evaluation.ImagePixels.LoadMask(path, 2, 2, ImageAnomalyDetectorOptions.DefaultMaxImagePixels);
            CollectionAssert.AreEqual(new[] { false, false, false, false }, half);
            // Upscaled to 8×8 each source pixel covers 2×2: (1,2) → rows 2-3, cols 4-5.
            var big = Microsoft.ML.Anomaly.Vision.Evaluation.ImagePixels.LoadMask(path, 8, 8, ImageAnomalyDetectorOptions.DefaultMaxImagePixels);
            CollectionAssert.AreEqual(new[] { 20, 21, 28, 29, 48, 49, 56, 57 }, Enumerable.Range(0, 64).Where(i => big[i]).ToArray());
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }

    [TestMethod]
    public void SkipsPixelMetricsWithoutMaps()
    {
        string folder = EvaluationTestImages.NewFolder();
        try
        {
            var ml = new MLContext(0);
            var data = ml.Data.LoadFromEnumerable(Rows(folder));
            var m = ml.AnomalyDetection.EvaluateImageAnomalies(data, anomalyMapColumnName: null);
            Assert.AreEqual(1.0, m.ImageAuroc, 1e-12);
            Assert.IsNull(m.PixelAuroc);
            Assert.IsNull(m.Aupro);
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }

    [TestMethod]
    public void FlatSquareMapsNeedASquareSize()
    {
        var ml = new MLContext(0);
        var data = ml.Data.LoadFromEnumerable(new[]
        {
            new FlatRow { Label = true, Score = 1f, AnomalyMap = new float[6] },
            new FlatRow { Label = false, Score = 0f, AnomalyMap = new float[6] },
        });
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(data));
        StringAssert.Contains(e.Message, "'AnomalyMap'");
        StringAssert.Contains(e.Message, "not a square");
    }

    [TestMethod]
    public void ColumnErrorsNameTheColumn()
    {
        var ml = new MLContext(0);
        var data = ml.Data.LoadFromEnumerable(new[] { new FloatLabelRow { Label = 1, Score = 1 } });
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(data, anomalyMapColumnName: null));
        StringAssert.Contains(e.Message, "'Label'");
        Assert.AreEqual("labelColumnName", e.ParamName);
        var missing = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(data, scoreColumnName: "Nope", labelColumnName: "Score"));
        StringAssert.Contains(missing.Message, "'Score' must be Boolean");
        var noMap = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(
            ml.Data.LoadFromEnumerable(new[] { new Row() }), anomalyMapColumnName: "Missing"));
        StringAssert.Contains(noMap.Message, "'Missing' was not found");
    }

    [TestMethod]
    public void SingleClassTestSetIsRejected()
    {
        var ml = new MLContext(0);
        var data = ml.Data.LoadFromEnumerable(new[]
        {
            new Row { Label = false, Score = 0.1f, AnomalyMap = new float[6] },
            new Row { Label = false, Score = 0.2f, AnomalyMap = new float[6] },
        });
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(data));
        StringAssert.Contains(e.Message, "need both good and anomalous");
    }
}
