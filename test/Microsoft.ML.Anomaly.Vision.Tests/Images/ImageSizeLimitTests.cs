using Microsoft.ML.Anomaly.Vision.Tests.Persistence;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Images;

/// <summary>The image size limit (<see cref="ImageAnomalyDetectorOptions.MaxImagePixels"/>): validated, applied to files and image columns, saved.</summary>
[TestClass]
public sealed class ImageSizeLimitTests
{
    [TestMethod]
    [DataRow(0L)]
    [DataRow(-5L)]
    [DataRow(int.MaxValue)]
    public void AnInvalidLimitIsRefusedNamingTheOption(long limit)
    {
        var ml = new MLContext();
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.Transforms.DetectCfaAnomalies(new CfaOptions { MaxImagePixels = limit }));
        StringAssert.Contains(error.Message, nameof(CfaOptions.MaxImagePixels));
        Assert.AreEqual("options", error.ParamName);
        var sweep = Assert.ThrowsExactly<ArgumentException>(() => new ImageDetectorSweep(ml, new ImageDetectorSweepOptions { MaxImagePixels = limit }));
        StringAssert.Contains(sweep.Message, nameof(ImageDetectorSweepOptions.MaxImagePixels));
    }

    [TestMethod]
    public void ImagesAboveTheLimitAreRefusedByScoringFitAndImageColumnsNamingTheRowSizeAndLimit()
    {
        var ml = new MLContext(0);
        string folder = TestImages.NewDirectory();
        string small = TestImages.WriteUniformPng(folder, "small.png", 30, 30, 10, 20, 30);    // 900 pixels
        string large = TestImages.WriteUniformPng(folder, "large.png", 40, 30, 10, 20, 30);    // 1200 pixels
        var options = new ToyOptions { InputColumnName = "ImagePath", MaxImagePixels = 1000 };
        var toy = new ToyTransformer(ml, options, mean: 0f);

        IDataView smallRows = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = small } });
        float score = toy.Transform(smallRows).GetColumn<float>("Score").Single();
        Assert.AreEqual(Enumerable.Range(0, 3).Select(c => MathF.Abs(TestImages.Normalize((byte)(10 * (c + 1)), c))).Sum() / 3f, score, 1e-5f);

        IDataView largeRows = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = small }, new ImagePathRow { ImagePath = large } });
        var scoring = Assert.ThrowsExactly<InvalidDataException>(() => toy.Transform(largeRows).GetColumn<float>("Score").ToArray());
        foreach (string part in new[] { "Row 1", large, "40×30", "1,200", "1,000", "MaxImagePixels" })
            StringAssert.Contains(scoring.Message, part);

        var fitting = Assert.ThrowsExactly<InvalidDataException>(() => new ToyEstimator(ml, options).Fit(largeRows));
        StringAssert.Contains(fitting.Message, large);

        IDataView images = ml.Transforms.LoadImages("Image", null, "ImagePath").Fit(largeRows).Transform(largeRows);
        var fromImages = new ToyTransformer(ml, new ToyOptions { InputColumnName = "Image", MaxImagePixels = 1000 }, mean: 0f);
        var imageColumn = Assert.ThrowsExactly<InvalidDataException>(() => fromImages.Transform(images).GetColumn<float>("Score").ToArray());
        foreach (string part in new[] { "row 1", "'Image'", "40×30", "1,000" })
            StringAssert.Contains(imageColumn.Message, part);
    }

    [TestMethod]
    public void TheLimitIsSavedWithTheModelAndKeptByCopies()
    {
        var ml = new MLContext(0);
        var toy = new ToyTransformer(ml, new ToyOptions { InputColumnName = "ImagePath", MaxImagePixels = 1234 }, mean: 0f);
        Assert.AreEqual(1234L, toy.WithThreshold(0.5f).MaxImagePixels);
        IDataView rows = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow() });
        string path = Path.Combine(TestImages.NewDirectory(), "toy.zip");
        ml.Model.Save(toy, rows.Schema, path);
        var loaded = (ImageAnomalyTransformerBase)new MLContext().Model.Load(path, out _);
        Assert.AreEqual(1234L, loaded.MaxImagePixels);
        Assert.AreEqual(ImageAnomalyDetectorOptions.DefaultMaxImagePixels, new ToyOptions().MaxImagePixels);
    }

    [TestMethod]
    public void EvaluationRefusesMasksAboveItsLimitNamingTheMask()
    {
        var ml = new MLContext(0);
        string mask = Evaluation.EvaluationTestImages.WriteGrayPng(Path.Combine(TestImages.NewDirectory(), "mask.png"), 16, 16, (y, x) => y < 4 && x < 4 ? (byte)255 : (byte)0);
        IDataView scored = ml.Data.LoadFromEnumerable(new[]
        {
            new MaskRow { Label = false, Score = 0.1f, AnomalyMap = new float[4] },
            new MaskRow { Label = true, Score = 0.9f, AnomalyMap = [1, 0, 0, 0], MaskPath = mask },
        });
        Assert.AreEqual(1.0, ml.AnomalyDetection.EvaluateImageAnomalies(scored, maxImagePixels: 256).PixelAuroc!.Value, 1e-12);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(scored, maxImagePixels: 255));
        StringAssert.Contains(error.Message, mask);
        StringAssert.Contains(error.Message, "16×16");
    }

    private sealed class MaskRow
    {
        public bool Label { get; set; }

        public float Score { get; set; }

        [VectorType(2, 2)]
        public float[] AnomalyMap { get; set; } = [];

        public string MaskPath { get; set; } = "";
    }
}
