using Microsoft.ML.Anomaly.Vision.Evaluation;
using Microsoft.ML.Anomaly.Vision.Tests.Detectors;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Images;

/// <summary>Image files the library decodes itself: incomplete files are errors naming the file; alpha is dropped, not multiplied in.</summary>
[TestClass]
public sealed class StrictImageDecodingTests
{
    [TestMethod]
    public void TruncatedPngIsRejectedNamingTheFile()
    {
        string folder = TestImages.NewDirectory();
        string whole = WriteNoisePng(folder, "whole.png", 48, 48);
        string truncated = Path.Combine(folder, "truncated.png");
        byte[] bytes = File.ReadAllBytes(whole);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);

        using (ImageTensorConverter.LoadImage(whole)) { }
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => ImageTensorConverter.LoadImage(truncated));
        StringAssert.Contains(ex.Message, truncated);
        StringAssert.Contains(ex.Message, "incomplete");
    }

    [TestMethod]
    public void FilesDecodedForScoringEqualTheDecodedImagesWhateverWasDecodedBefore()
    {
        string folder = TestImages.NewDirectory();
        string large = WriteNoisePng(folder, "large.png", 64, 48);
        string small = Path.Combine(folder, "small.png");
        var pixels = new byte[20 * 30 * 3];
        new Random(7).NextBytes(pixels);
        PngEncoder.Write(small, pixels, 20, 30, 3);
        string truncated = Path.Combine(folder, "truncated.png");
        byte[] bytes = File.ReadAllBytes(large);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);

        // Pooled buffers come back holding the previous file's pixels; a smaller file after a larger one must not see them.
        foreach (string path in new[] { large, small, large, small })
        {
            var fromFile = new float[3 * 16 * 24];
            ImageTensorConverter.LoadNormalizedChw(path, 16, 24, fromFile, ImageAnomalyDetectorOptions.DefaultMaxImagePixels);
            var fromImage = new float[3 * 16 * 24];
            using (MLImage image = ImageTensorConverter.LoadImage(path))
                ImageTensorConverter.ToNormalizedChw(image, 16, 24, fromImage);
            CollectionAssert.AreEqual(fromImage, fromFile, Path.GetFileName(path));
        }
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => ImageTensorConverter.LoadNormalizedChw(truncated, 16, 24, new float[3 * 16 * 24], ImageAnomalyDetectorOptions.DefaultMaxImagePixels));
        StringAssert.Contains(ex.Message, truncated);
    }

    [TestMethod]
    public void TransparentPixelsKeepTheirColourAsConvertRgbDoes()
    {
        string folder = TestImages.NewDirectory();
        // RGBA: (200, 50, 50) fully transparent, (10, 20, 30) half transparent; grey + alpha: 120 transparent.
        string rgba = Path.Combine(folder, "rgba.png");
        PngEncoder.Write(rgba, [200, 50, 50, 0, 10, 20, 30, 128], 2, 1, 4);
        string greyAlpha = Path.Combine(folder, "grey-alpha.png");
        PngEncoder.Write(greyAlpha, [120, 0], 1, 1, 2);

        var pixels = new float[3 * 2];
        using (MLImage image = ImageTensorConverter.LoadImage(rgba))
            ImageTensorConverter.ToNormalizedChw(image, 1, 2, pixels);
        float[] expected = [TestImages.Normalize(200, 0), TestImages.Normalize(10, 0), TestImages.Normalize(50, 1), TestImages.Normalize(20, 1),
            TestImages.Normalize(50, 2), TestImages.Normalize(30, 2)];
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], pixels[i], 1e-5f, $"value {i}");

        var grey = new float[3];
        using (MLImage image = ImageTensorConverter.LoadImage(greyAlpha))
            ImageTensorConverter.ToNormalizedChw(image, 1, 1, grey);
        for (int c = 0; c < 3; c++)
            Assert.AreEqual(TestImages.Normalize(120, c), grey[c], 1e-5f, $"channel {c}");
    }

    [TestMethod]
    public void TransparentMaskPixelsKeepTheirValue()
    {
        string folder = TestImages.NewDirectory();
        string mask = Path.Combine(folder, "mask.png");
        PngEncoder.Write(mask, [255, 0, 0, 0], 2, 1, 2);   // white but transparent, black opaque
        CollectionAssert.AreEqual(new[] { true, false }, ImagePixels.LoadMask(mask, 1, 2, ImageAnomalyDetectorOptions.DefaultMaxImagePixels));
    }

    [TestMethod]
    public void TruncatedMaskIsRejectedInEvaluationNamingTheFile()
    {
        string folder = TestImages.NewDirectory();
        string mask = WriteNoisePng(folder, "mask.png", 32, 32);
        byte[] bytes = File.ReadAllBytes(mask);
        File.WriteAllBytes(mask, bytes[..(bytes.Length / 2)]);
        var ml = new MLContext(seed: 0);
        IDataView scored = ml.Data.LoadFromEnumerable(new[]
        {
            new MaskRow { Label = false, Score = 0.1f, AnomalyMap = new float[4] },
            new MaskRow { Label = true, Score = 0.9f, AnomalyMap = [1, 0, 0, 0], MaskPath = mask },
        });
        var ex = Assert.Throws<Exception>(() => ml.AnomalyDetection.EvaluateImageAnomalies(scored));
        StringAssert.Contains(Flatten(ex), mask);
        StringAssert.Contains(Flatten(ex), "incomplete");
    }

    [TestMethod]
    public void TruncatedTrainingOrTestImageIsRejectedByFitAndTransformNamingTheFile()
    {
        string folder = TestImages.NewDirectory();
        string good = WriteNoisePng(folder, "good.png", 64, 64);
        string truncated = Path.Combine(folder, "truncated.png");
        File.WriteAllBytes(truncated, File.ReadAllBytes(good)[..(int)(new FileInfo(good).Length / 2)]);
        var ml = new MLContext(seed: 0);
        var estimator = ml.Transforms.DetectDfmAnomalies(new DfmOptions
        {
            BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "ImagePath", ImageHeight = 64, ImageWidth = 64, Layer = "layer2",
        });
        PathRow[] goodRows = ml.Data.CreateEnumerable<PathRow>(DetectorFixture.Train(ml), reuseRowObject: false).ToArray();
        IDataView train = ml.Data.LoadFromEnumerable(goodRows.Append(new PathRow { ImagePath = truncated }));
        var fitError = Assert.Throws<Exception>(() => estimator.Fit(train));
        StringAssert.Contains(Flatten(fitError), truncated);

        var model = estimator.Fit(ml.Data.LoadFromEnumerable(goodRows));
        IDataView test = ml.Data.LoadFromEnumerable(new[] { new PathRow { ImagePath = truncated } });
        var scoreError = Assert.Throws<Exception>(() => model.Transform(test).GetColumn<float>("Score").ToArray());
        StringAssert.Contains(Flatten(scoreError), truncated);
        model.Dispose();
    }

    internal static string WriteNoisePng(string folder, string name, int width, int height)
    {
        var random = new Random(5);
        var pixels = new byte[width * height * 3];
        random.NextBytes(pixels);
        string path = Path.Combine(folder, name);
        PngEncoder.Write(path, pixels, width, height, 3);
        return path;
    }

    internal static string Flatten(Exception ex)
    {
        var parts = new List<string>();
        for (Exception? e = ex; e is not null; e = e.InnerException)
            parts.Add(e.Message);
        return string.Join(" | ", parts);
    }

    public sealed class PathRow
    {
        public string ImagePath { get; set; } = "";
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
