using System.Diagnostics;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Tests.Images;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Detectors;

/// <summary>The detectors honour the MLContext as ML.NET's own trainers do: its seed, its cancellation and its log.</summary>
[TestClass]
public sealed class MlContextTests
{
    [TestMethod]
    public void TheContextsSeedSeedsTrainingWhenTheOptionsSetNone()
    {
        float[] contextSeed5 = CfaScores(new MLContext(seed: 5), optionsSeed: null);
        float[] optionsSeed5 = CfaScores(new MLContext(seed: 9), optionsSeed: 5);
        float[] contextSeed6 = CfaScores(new MLContext(seed: 6), optionsSeed: null);
        CollectionAssert.AreEqual(optionsSeed5, contextSeed5, "the context's seed 5 must train as the options' seed 5");
        CollectionAssert.AreNotEqual(contextSeed6, contextSeed5, "another context seed must give another model");
    }

    [TestMethod]
    [DoNotParallelize]   // a timing: measured without other tests competing for the two cores
    [DataRow("cfa", "training")]
    [DataRow("cflow", "training")]
    [DataRow("dfm-fre", "features")]
    [DataRow("cflow", "features")]
    public void CancellingTheContextStopsFitWithinASecond(string detector, string stage)
    {
        var ml = new MLContext(seed: 1);
        var cancelled = Stopwatch.StartNew();
        bool cancelledOnce = false;
        BackboneDetectorOptions options = Options(detector);
        options.Progress = new SynchronousProgress(report =>
        {
            if (report.Stage == stage && !cancelledOnce)
            {
                cancelledOnce = true;
                ml.CancelExecution();
                cancelled.Restart();
            }
        });
        IEstimator<ITransformer> estimator = detector switch
        {
            "cfa" => ml.Transforms.DetectCfaAnomalies((CfaOptions)options),
            "cflow" => ml.Transforms.DetectCflowAnomalies((CflowOptions)options),
            _ => ml.Transforms.DetectDfmAnomalies((DfmOptions)options),
        };
        Assert.Throws<OperationCanceledException>(() => estimator.Fit(DetectorFixture.Train(ml)));
        Assert.IsTrue(cancelledOnce, $"the {stage} stage was reached");
        Assert.IsLessThan(1.0, cancelled.Elapsed.TotalSeconds, "Fit must stop within a second of the cancellation");
    }

    [TestMethod]
    public void CancellingTheContextStopsScoring()
    {
        var ml = new MLContext(seed: 1);
        using var model = (DfmTransformer)DetectorFixture.Estimator(ml, "dfm-fre").Fit(DetectorFixture.Train(ml));
        ml.CancelExecution();
        Assert.Throws<OperationCanceledException>(() => model.Transform(DetectorFixture.Test(ml)).GetColumn<float>("Score").ToArray());
    }

    [TestMethod]
    public void FitLogsItsProgressToTheContextsLog()
    {
        var ml = new MLContext(seed: 1);
        var messages = new List<string>();
        ml.Log += (_, e) =>
        {
            lock (messages)
                messages.Add(e.Message);
        };
        using var model = (DfmTransformer)DetectorFixture.Estimator(ml, "dfm-fre").Fit(DetectorFixture.Train(ml));
        string log = string.Join("\n", messages);
        StringAssert.Contains(log, "features: 12/12");
        StringAssert.Contains(log, "fitting PCA: 1/1");
        StringAssert.Contains(log, "Seed 1");
    }

    [TestMethod]
    public void TheContextsGpuSettingsAreHonouredWhereNoCudaDeviceIsUsable()
    {
        if (TorchRuntime.IsCudaAvailable())
            Assert.Inconclusive("A CUDA device is usable here: the fallback cannot be observed.");
        var strict = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        int reports = 0;
        var options = (DfmOptions)Options("dfm-fre");
        options.Progress = new SynchronousProgress(_ => reports++);
        var ex = Assert.ThrowsExactly<InvalidOperationException>(() => strict.Transforms.DetectDfmAnomalies(options).Fit(DetectorFixture.Train(strict)));
        StringAssert.Contains(ex.Message, "GpuDeviceId is 0");
        StringAssert.Contains(ex.Message, "FallbackToCpu");
        Assert.AreEqual(0, reports, "the device is checked before any image is read");

        var lenient = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = true };
        var warnings = new List<string>();
        lenient.Log += (_, e) =>
        {
            lock (warnings)
                warnings.Add(e.Message);
        };
        using var model = lenient.Transforms.DetectDfmAnomalies((DfmOptions)Options("dfm-fre")).Fit(DetectorFixture.Train(lenient));
        Assert.IsTrue(warnings.Any(m => m.Contains("fall back to the CPU", StringComparison.Ordinal)), string.Join("\n", warnings));
    }

    private static float[] CfaScores(MLContext ml, int? optionsSeed)
    {
        var options = (CfaOptions)Options("cfa");
        options.Epochs = 1;
        options.Seed = optionsSeed;
        using var model = ml.Transforms.DetectCfaAnomalies(options).Fit(DetectorFixture.Train(ml));
        return DetectorPersistenceTests.Scores(ml, model.Transform(DetectorFixture.Test(ml)));
    }

    private static BackboneDetectorOptions Options(string detector) => detector switch
    {
        "cfa" => new CfaOptions
        { BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "ImagePath", ImageHeight = DetectorFixture.Size, ImageWidth = DetectorFixture.Size, Epochs = 200, BatchSize = 4 },
        "cflow" => new CflowOptions
        {
            BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "ImagePath", ImageHeight = DetectorFixture.Size, ImageWidth = DetectorFixture.Size, Epochs = 200,
            ConditionVectorSize = 16, CouplingBlocks = 2, BatchSize = 4, FiberBatchSize = 16,
        },
        _ => new DfmOptions
        { BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "ImagePath", ImageHeight = DetectorFixture.Size, ImageWidth = DetectorFixture.Size, Layer = "layer2", BatchSize = 2 },
    };

    /// <summary>Reports on the calling thread (<see cref="Progress{T}"/> would post to the thread pool).</summary>
    private sealed class SynchronousProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}

/// <summary>Errors that name the problem as the user wrote it, at the earliest point it is known.</summary>
[TestClass]
public sealed class EarlyErrorTests
{
    [TestMethod]
    public void CflowFiberBatchTooLargeNamesTheLayerAsConfiguredBeforeAnyFeatureIsExtracted()
    {
        var ml = new MLContext(seed: 1);
        int reports = 0;
        var options = new CflowOptions
        {
            BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "ImagePath", ImageHeight = DetectorFixture.Size, ImageWidth = DetectorFixture.Size,
            BatchSize = 2, FiberBatchSize = 16, ConditionVectorSize = 16, CouplingBlocks = 2, Epochs = 1,
            Progress = new Progress<TrainingProgress>(_ => Interlocked.Increment(ref reports)),
        };
        // At 64 pixels layer4 is a 2×2 grid: 2 images give 8 fibers, fewer than 16.
        var ex = Assert.ThrowsExactly<ArgumentException>(() => ml.Transforms.DetectCflowAnomalies(options).Fit(DetectorFixture.Train(ml)));
        StringAssert.Contains(ex.Message, "'layer4'");
        StringAssert.Contains(ex.Message, "2×2");
        Assert.AreEqual(0, reports, "no feature may be extracted before the check");
    }

    [TestMethod]
    public void ADirectoryAsBackbonePathIsCalledADirectory()
    {
        var ml = new MLContext(seed: 1);
        string folder = TestSupport.TestImages.NewDirectory();
        var options = new DfmOptions { BackbonePath = folder, InputColumnName = "ImagePath", ImageHeight = 64, ImageWidth = 64 };
        var ex = Assert.ThrowsExactly<ArgumentException>(() => ml.Transforms.DetectDfmAnomalies(options).Fit(DetectorFixture.Train(ml)));
        StringAssert.Contains(ex.Message, folder);
        StringAssert.Contains(ex.Message, "is a directory");
    }

    [TestMethod]
    public void ACorruptImageFileIsNamedWhenTheLibraryDecodesThePathColumn()
    {
        string folder = TestSupport.TestImages.NewDirectory();
        string corrupt = Path.Combine(folder, "corrupt.png");
        byte[] png = File.ReadAllBytes(StrictImageDecodingTests.WriteNoisePng(folder, "noise.png", 64, 64));
        for (int i = png.Length / 2; i < png.Length / 2 + 64; i++)
            png[i] ^= 0x5A;   // damage the compressed pixel data, keep the length
        File.WriteAllBytes(corrupt, png);
        var ml = new MLContext(seed: 1);
        using var model = (DfmTransformer)DetectorFixture.Estimator(ml, "dfm-fre").Fit(DetectorFixture.Train(ml));
        IDataView test = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = corrupt } });
        var ex = Assert.Throws<Exception>(() => model.Transform(test).GetColumn<float>("Score").ToArray());
        StringAssert.Contains(StrictImageDecodingTests.Flatten(ex), corrupt);
    }
}
