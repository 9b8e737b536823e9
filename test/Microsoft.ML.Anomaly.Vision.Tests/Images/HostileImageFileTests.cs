using Microsoft.ML.Anomaly.Vision.Tests.Detectors;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Images;

/// <summary>
/// Image paths that would take the process down or hang it: PNG headers claiming billions of pixels in a few bytes, a
/// truncated copy of a huge image, and a FIFO. Each must be refused with an error naming the file, before any pixel
/// buffer is allocated or the file is opened.
/// </summary>
[TestClass]
public sealed class HostileImageFileTests
{
    private static readonly Lazy<ITransformer> Dfm = new(() =>
    {
        var ml = new MLContext(seed: 0);
        return DetectorFixture.Estimator(ml, "dfm-fre").Fit(DetectorFixture.Train(ml));
    });

    [TestMethod]
    [DataRow(32768, 32769)]
    [DataRow(30000, 30000)]
    [DataRow(32768, 32768)]
    public void AHugePngHeaderIsRefusedNamingTheFileItsSizeAndTheLimitWithoutAllocatingIt(int width, int height)
    {
        string path = HostileFiles.WritePng(TestImages.NewDirectory(), "huge.png", width, height, rows: 4);
        Assert.IsLessThan(200, new FileInfo(path).Length);

        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.ThrowsExactly<InvalidDataException>(() => ImageTensorConverter.LoadImage(path));
        Assert.IsLessThan(16L << 20, GC.GetAllocatedBytesForCurrentThread() - allocated, "no pixel buffer may be allocated");
        StringAssert.Contains(error.Message, path);
        StringAssert.Contains(error.Message, $"{width}×{height}");
        StringAssert.Contains(error.Message, "MaxImagePixels");
    }

    [TestMethod]
    public void ATruncatedCopyOfAHugeImageFailsWithoutAllocatingItsPixels()
    {
        string folder = TestImages.NewDirectory();
        string whole = HostileFiles.WritePng(folder, "whole.png", 20000, 20000);
        string truncated = Path.Combine(folder, "truncated.png");
        File.WriteAllBytes(truncated, File.ReadAllBytes(whole)[..104]);

        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.ThrowsExactly<InvalidDataException>(() => ImageTensorConverter.LoadImage(truncated));
        Assert.IsLessThan(16L << 20, GC.GetAllocatedBytesForCurrentThread() - allocated, "no pixel buffer may be allocated");
        StringAssert.Contains(error.Message, truncated);
    }

    [TestMethod]
    public void AHugePngHeaderIsRefusedByScoringAndByFitNamingTheFile()
    {
        var ml = new MLContext(seed: 0);
        string path = HostileFiles.WritePng(TestImages.NewDirectory(), "bomb.png", 32768, 32769, rows: 4);
        IDataView bomb = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = path } });

        var scoring = Assert.Throws<Exception>(() => Dfm.Value.Transform(bomb).GetColumn<float>("Score").ToArray());
        StringAssert.Contains(StrictImageDecodingTests.Flatten(scoring), path);
        StringAssert.Contains(StrictImageDecodingTests.Flatten(scoring), "32768×32769");

        using var engine = ml.Model.CreatePredictionEngine<ImagePathRow, ScoredRow>(Dfm.Value, new PredictionEngineOptions { OwnsTransformer = false });
        var predicting = Assert.Throws<Exception>(() => engine.Predict(new ImagePathRow { ImagePath = path }));
        StringAssert.Contains(StrictImageDecodingTests.Flatten(predicting), path);

        ImagePathRow[] good = ml.Data.CreateEnumerable<ImagePathRow>(DetectorFixture.Train(ml), reuseRowObject: false).ToArray();
        IDataView train = ml.Data.LoadFromEnumerable(good.Append(new ImagePathRow { ImagePath = path }));
        var fitting = Assert.Throws<Exception>(() => DetectorFixture.Estimator(ml, "dfm-fre").Fit(train));
        StringAssert.Contains(StrictImageDecodingTests.Flatten(fitting), path);
        StringAssert.Contains(StrictImageDecodingTests.Flatten(fitting), "32768×32769");
    }

    [TestMethod]
    public void AFifoAsAnImagePathIsRefusedByScoringFitAndEvaluationNamingIt()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Inconclusive("FIFOs are made with mkfifo and released as Linux allows.");
        var ml = new MLContext(seed: 0);
        string fifo = HostileFiles.MakeFifo(TestImages.NewDirectory(), "pipe.png");
        IDataView rows = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = fifo } });

        Exception scoring = HostileFiles.ThrowsWithoutHanging(() => Dfm.Value.Transform(rows).GetColumn<float>("Score").ToArray(), fifo);
        StringAssert.Contains(StrictImageDecodingTests.Flatten(scoring), fifo);
        StringAssert.Contains(StrictImageDecodingTests.Flatten(scoring), "not a regular file");

        ImagePathRow[] good = ml.Data.CreateEnumerable<ImagePathRow>(DetectorFixture.Train(ml), reuseRowObject: false).ToArray();
        IDataView train = ml.Data.LoadFromEnumerable(good.Append(new ImagePathRow { ImagePath = fifo }));
        Exception fitting = HostileFiles.ThrowsWithoutHanging(() => DetectorFixture.Estimator(ml, "dfm-fre").Fit(train), fifo);
        StringAssert.Contains(StrictImageDecodingTests.Flatten(fitting), fifo);

        IDataView scored = ml.Data.LoadFromEnumerable(new[]
        {
            new MaskRow { Label = false, Score = 0.1f, AnomalyMap = new float[4] },
            new MaskRow { Label = true, Score = 0.9f, AnomalyMap = [1, 0, 0, 0], MaskPath = fifo },
        });
        Exception evaluating = HostileFiles.ThrowsWithoutHanging(() => ml.AnomalyDetection.EvaluateImageAnomalies(scored), fifo);
        StringAssert.Contains(StrictImageDecodingTests.Flatten(evaluating), fifo);
        StringAssert.Contains(StrictImageDecodingTests.Flatten(evaluating), "not a regular file");
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
