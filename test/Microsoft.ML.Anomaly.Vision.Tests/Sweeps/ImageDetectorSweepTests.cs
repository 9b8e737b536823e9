using System.Diagnostics;
using System.Text.Json;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Tests.Detectors;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

namespace Microsoft.ML.Anomaly.Vision.Tests.Sweeps;

[TestClass]
public sealed class ImageDetectorSweepTests
{
    /// <summary>
    /// Two configurations of which only one can see the defects: the defects are a ±40 one-pixel checkerboard added to
    /// smooth images, which the antialiased 2× downscale to 32 pixels averages away exactly (its taps 1/8, 3/8, 3/8, 1/8
    /// cancel on alternating values), while at 64 pixels it is plain. The sweep must pick the 64-pixel trial even though
    /// the grid runs the 32-pixel one first (on a tie the earlier trial would win).
    /// </summary>
    [TestMethod]
    public void PicksTheConfigurationThatCanSeeTheDefectsAndSharesFeaturesPerSize()
    {
        var ml = new MLContext(seed: 1);
        var (train, validation) = CheckerboardData(ml);
        using SweepResult sweep = ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions
        {
            BackbonePath = DetectorFixture.BackbonePath,
            InputColumnName = "ImagePath",
            ImageSize = SearchParameter.Choice(32, 64),
            SearchSpace = [new DfmSearchSpace { Layer = "layer1", PoolingKernelSize = 1 }],
            Strategy = SweepStrategy.Grid,
            KeepAllModels = true,
        }).Fit(train, validation);

        Assert.HasCount(2, sweep.Trials);
        Assert.AreEqual(32, sweep.Trials[0].ImageSize, "the grid runs sizes in order");
        Assert.IsNotNull(sweep.BestTrial);
        Assert.AreEqual(64, sweep.BestTrial.ImageSize, sweep.ToLeaderboardString());
        Assert.AreEqual(1.0, sweep.BestTrial.MetricValue!.Value, 1e-9, "at 64 pixels the checkerboard is plain");
        Assert.IsLessThan(0.9, sweep.Trials[0].MetricValue!.Value, "at 32 pixels the checkerboard is averaged away");
        Assert.AreSame(sweep.BestTrial.Model, sweep.BestModel);
        Assert.IsFalse(sweep.SyntheticValidation);

        // One extraction per input size, each running every training and validation image through the backbone once.
        Assert.HasCount(2, sweep.FeatureExtractions);
        CollectionAssert.AreEqual(new[] { 32, 64 }, sweep.FeatureExtractions.Select(e => e.ImageSize).ToArray());
        Assert.AreEqual(2 * (TrainCount + (2 * ValidationPairs)), sweep.BackboneImagesProcessed);

        // A trial trained on shared features is the model a standalone Fit makes.
        var best = sweep.BestTrial;
        var standalone = ml.Transforms.DetectDfmAnomalies(new DfmOptions
        {
            BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "ImagePath", ImageHeight = 64, ImageWidth = 64,
            Layer = "layer1", PoolingKernelSize = 1, Seed = 1,
        }).Fit(train);
        float[] expected = Scores(ml, standalone.Transform(validation));
        float[] actual = Scores(ml, best.Model!.Transform(validation));
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], actual[i], 1e-4f * Math.Max(1, Math.Abs(expected[i])), $"image {i}");
        standalone.Dispose();
    }

    [TestMethod]
    public void WithoutAValidationSetHeldOutImagesGetSyntheticDefectsAndTheOutputsAreWritten()
    {
        var ml = new MLContext(seed: 3);
        string output = Path.Combine(TestImages.NewDirectory(), "sweep");
        using SweepResult sweep = ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions
        {
            BackbonePath = DetectorFixture.BackbonePath,
            InputColumnName = "ImagePath",
            ImageSize = 32,
            SearchSpace =
            [
                new DfmSearchSpace { Layer = "layer2", VarianceShare = new[] { 0.9f, 0.97f } },
                new CfaSearchSpace { Epochs = 1, GammaD = 4, Configure = o => o.BatchSize = 4 },
            ],
            Strategy = SweepStrategy.Grid,
            HoldOutFraction = 0.34f,
            Metric = SweepMetric.PixelAuroc,
            OutputFolder = output,
            OverlayCount = 4,
        }).Fit(DetectorFixture.Train(ml));

        Assert.IsTrue(sweep.SyntheticValidation);
        Assert.AreEqual(8, sweep.TrainingImages, "4 of the 12 training images are held out");
        Assert.AreEqual(4, sweep.ValidationImages);
        Assert.HasCount(3, sweep.Trials);
        Assert.IsTrue(sweep.Trials.All(t => t.Error is null && t.MetricValue is double v && v >= 0 && v <= 1), sweep.ToLeaderboardString());
        Assert.HasCount(1, sweep.FeatureExtractions, "three trials of one size share one extraction");
        CollectionAssert.AreEquivalent(new[] { "layer1", "layer2", "layer3" }, sweep.FeatureExtractions[0].Layers.ToArray());
        Assert.AreEqual(8 + 4, sweep.BackboneImagesProcessed);
        Assert.IsTrue(sweep.Trials.All(t => t.FitSeconds >= sweep.FeatureExtractions[0].Seconds * 0.1 && t.FitSeconds > t.TrainSeconds),
            "a standalone fit costs the trial's training plus the training features' extraction");

        CollectionAssert.AreEquivalent(new[] { "best-model.zip", "overlays", "sweep-metric.png", "sweep.html", "sweep.json" },
            Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName).ToArray(), "only the outputs, no staging folder");
        Assert.HasCount(4, Directory.GetFiles(Path.Combine(output, "overlays"), "*.png"));
        using (JsonDocument json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "sweep.json"))))
        {
            Assert.AreEqual("synthetic", json.RootElement.GetProperty("validation").GetString());
            Assert.AreEqual(3, json.RootElement.GetProperty("trials").GetArrayLength());
            Assert.AreEqual(sweep.BestTrial!.Number, json.RootElement.GetProperty("best_trial").GetInt32());
        }
        StringAssert.Contains(File.ReadAllText(Path.Combine(output, "sweep.html")), "overlays/");

        ITransformer loaded = new MLContext().Model.Load(Path.Combine(output, "best-model.zip"), out _);
        IDataView test = DetectorFixture.Test(ml);
        CollectionAssert.AreEqual(Scores(ml, sweep.BestModel!.Transform(test)), Scores(ml, loaded.Transform(test)));
        (loaded as IDisposable)?.Dispose();
    }

    [TestMethod]
    public void RandomSearchIsSeededByTheMLContextAndTheTimeBudgetStopsTheSweep()
    {
        static string[] Plan(int seed) => Run(new MLContext(seed), new ImageDetectorSweepOptions
        {
            ImageSize = 32,
            SearchSpace = [new DfmSearchSpace { Layer = "layer1", PoolingKernelSize = SearchParameter.Choice(1, 2), VarianceShare = SearchParameter.Range(0.8f, 0.99f) }],
            MaxTrials = 3,
        }).Trials.Select(t => t.Description).ToArray();

        // A MaxTrials larger than the space runs every configuration once (MaxTrials × 100 draws once wrapped to a negative count).
        var small = new DfmSearchSpace { Layer = "layer1", PoolingKernelSize = SearchParameter.Choice(1, 2), VarianceShare = SearchParameter.Choice(0.9f, 0.97f) };
        string[] all = Run(new MLContext(5), new ImageDetectorSweepOptions { ImageSize = 32, SearchSpace = [small], MaxTrials = int.MaxValue })
            .Trials.Select(t => t.Description).ToArray();
        Assert.HasCount(4, all, string.Join("; ", all));
        Assert.HasCount(4, all.Distinct());

        string[] first = Plan(5);
        Assert.HasCount(3, first);
        Assert.HasCount(3, first.Distinct(), "random search draws distinct configurations");
        CollectionAssert.AreEqual(first, Plan(5));
        CollectionAssert.AreNotEqual(first, Plan(6));

        SweepResult stopped = Run(new MLContext(1), new ImageDetectorSweepOptions { ImageSize = 32, SearchSpace = [new DfmSearchSpace()], TimeBudget = TimeSpan.FromTicks(1) });
        Assert.IsTrue(stopped.TimeBudgetReached);
        Assert.IsEmpty(stopped.Trials);
        Assert.IsNull(stopped.BestModel);

        static SweepResult Run(MLContext ml, ImageDetectorSweepOptions options)
        {
            options.BackbonePath = DetectorFixture.BackbonePath;
            options.InputColumnName = "ImagePath";
            options.HoldOutFraction = 0.34f;
            using SweepResult result = ml.AnomalyDetection.SweepImageDetectors(options).Fit(DetectorFixture.Train(ml));
            return result;
        }
    }

    [TestMethod]
    public void SuccessiveHalvingTrainsEveryConfigurationBrieflyAndTheBestAgainWithAllItsEpochs()
    {
        var ml = new MLContext(seed: 4);
        using SweepResult sweep = ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions
        {
            BackbonePath = DetectorFixture.BackbonePath,
            InputColumnName = "ImagePath",
            ImageSize = 32,
            SearchSpace = [new CfaSearchSpace { GammaD = new[] { 1, 2, 4 }, Epochs = 5, Configure = o => o.BatchSize = 4 }, new DfmSearchSpace { Layer = "layer2", PoolingKernelSize = 1 }],
            Strategy = SweepStrategy.Grid,
            HoldOutFraction = 0.34f,
            SuccessiveHalvingRate = 3,
        }).Fit(DetectorFixture.Train(ml));

        string Setting(SweepTrialResult t, string name) => t.Settings.Single(s => s.Key == name).Value;
        Assert.HasCount(5, sweep.Trials, sweep.ToLeaderboardString());
        var briefly = sweep.Trials.Where(t => t.Detector == SweepDetector.Cfa).Take(3).ToList();
        Assert.IsTrue(briefly.All(t => Setting(t, "Epochs") == "2"), "5 epochs / 3, rounded up");
        Assert.AreEqual(SweepDetector.Dfm, sweep.Trials[3].Detector, "DFM has no epochs and runs once");
        SweepTrialResult promoted = sweep.Trials[4];
        Assert.AreEqual("5", Setting(promoted, "Epochs"));
        SweepTrialResult bestBrief = sweep.Leaderboard.First(briefly.Contains);
        Assert.AreEqual(Setting(bestBrief, "GammaD"), Setting(promoted, "GammaD"), "the best brief configuration is the one promoted");
    }

    [TestMethod]
    [DoNotParallelize]
    public void CancellationStopsTheSweepWithinASecondAndLeavesNoFiles()
    {
        var ml = new MLContext(seed: 2);
        string output = Path.Combine(TestImages.NewDirectory(), "sweep");
        string[] temporaryBefore = SweepTemporaryFolders();
        using var cancellation = new CancellationTokenSource();
        var sinceCancel = new Stopwatch();
        var progress = new SynchronousProgress(p =>
        {
            // Cancel once the second trial trains, so that the first trial's model is held and must be released.
            if (p.Stage == "training" && p.Trial == 2 && !cancellation.IsCancellationRequested)
            {
                sinceCancel.Start();
                cancellation.Cancel();
            }
        });
        var sweep = ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions
        {
            BackbonePath = DetectorFixture.BackbonePath,
            InputColumnName = "ImagePath",
            ImageSize = DetectorFixture.Size,
            SearchSpace = [new DfmSearchSpace { Layer = "layer2" }, new CfaSearchSpace { Epochs = 500, Configure = o => o.BatchSize = 4 }],
            Strategy = SweepStrategy.Grid,
            HoldOutFraction = 0.34f,
            OutputFolder = output,
            Progress = progress,
            CancellationToken = cancellation.Token,
        });
        Assert.Throws<OperationCanceledException>(() => sweep.Fit(DetectorFixture.Train(ml)));
        sinceCancel.Stop();
        Assert.IsTrue(cancellation.IsCancellationRequested, "the sweep was cancelled while the second trial trained");
        Assert.IsLessThan(1.0, sinceCancel.Elapsed.TotalSeconds, "the sweep must stop within a second of the cancellation");
        Assert.IsFalse(Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any(), "a cancelled sweep writes nothing");
        CollectionAssert.IsSubsetOf(SweepTemporaryFolders(), temporaryBefore, "the synthetic validation images are deleted");
    }

    [TestMethod]
    public void AnOutputFolderThatCannotBeWrittenFailsTheSweepBeforeItsFirstTrial()
    {
        // A folder below a file can never be created, whoever runs the test (permissions would not stop root).
        string file = Path.Combine(TestImages.NewDirectory(), "a-file");
        File.WriteAllText(file, "not a folder");
        string output = Path.Combine(file, "sweep");
        var ml = new MLContext(seed: 1);
        var stages = new List<string>();
        var sweep = ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions
        {
            BackbonePath = DetectorFixture.BackbonePath,
            InputColumnName = "ImagePath",
            ImageSize = 32,
            SearchSpace = [new DfmSearchSpace { Layer = "layer2" }],
            Strategy = SweepStrategy.Grid,
            OutputFolder = output,
            Progress = new SynchronousProgress(p => stages.Add(p.Stage)),
        });
        var error = Assert.Throws<IOException>(() => sweep.Fit(DetectorFixture.Train(ml)));
        StringAssert.Contains(error.Message, output);
        CollectionAssert.AreEqual(Array.Empty<string>(), stages, "no features were extracted and no trial ran");
    }

    [TestMethod]
    [DoNotParallelize]
    public void TemporaryFoldersOfKilledSweepsAreDeletedWhenTheNextSweepStartsAndLiveOnesAreKept()
    {
        // Folders as a sweep names them: the owner's process id and start time (Unix ms), then a guid.
        long ownStart = new DateTimeOffset(Process.GetCurrentProcess().StartTime.ToUniversalTime()).ToUnixTimeMilliseconds();
        string Folder(string name)
        {
            string path = Path.Combine(Path.GetTempPath(), name);
            Directory.CreateDirectory(path);
            File.WriteAllText(Path.Combine(path, "synthetic_000.png"), "left by a sweep");
            return path;
        }
        string noProcess = Folder($"anomaly-vision-sweep-{int.MaxValue}-{ownStart}-{Guid.NewGuid():N}");
        string reusedId = Folder($"anomaly-vision-sweep-{Environment.ProcessId}-{ownStart - 3_600_000}-{Guid.NewGuid():N}");
        string live = Folder($"anomaly-vision-sweep-{Environment.ProcessId}-{ownStart}-{Guid.NewGuid():N}");
        string unnamed = Folder($"anomaly-vision-sweep-{Guid.NewGuid():N}");
        try
        {
            var ml = new MLContext(seed: 1);
            var sweep = ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions
            {
                BackbonePath = DetectorFixture.BackbonePath,
                InputColumnName = "ImagePath",
                ImageSize = 32,
                SearchSpace = [new DfmSearchSpace { Layer = "layer2" }],
            });
            // Two images are too few for the synthetic split: the sweep stops once it has started.
            IDataView twoImages = ml.Data.TakeRows(DetectorFixture.Train(ml), 2);
            var error = Assert.Throws<ArgumentException>(() => sweep.Fit(twoImages));
            StringAssert.Contains(error.Message, "at least 4");

            Assert.IsFalse(Directory.Exists(noProcess), "the folder of a process that no longer exists is deleted");
            Assert.IsFalse(Directory.Exists(reusedId), "the folder of an earlier process with a reused id is deleted");
            Assert.IsTrue(Directory.Exists(live), "the folder of a live process is kept");
            Assert.IsTrue(Directory.Exists(unnamed), "a folder without an owner in its name is kept");
        }
        finally
        {
            foreach (string folder in new[] { noProcess, reusedId, live, unnamed })
                if (Directory.Exists(folder))
                    Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void ABatchSizeTooLargeForOneArrayIsRefusedWithTheOptionNamed()
    {
        var ml = new MLContext(seed: 1);
        var options = new ImageDetectorSweepOptions { BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "ImagePath", BatchSize = int.MaxValue };
        var error = Assert.Throws<ArgumentException>(() => ml.AnomalyDetection.SweepImageDetectors(options).Fit(DetectorFixture.Train(ml)));
        StringAssert.Contains(error.Message, "BatchSize");
        StringAssert.Contains(error.Message, "2147483647");
    }

    private const int TrainCount = 12;
    private const int ValidationPairs = 4;

    private static string[] SweepTemporaryFolders() => Directory.GetDirectories(Path.GetTempPath(), "anomaly-vision-sweep-*");

    private static float[] Scores(MLContext ml, IDataView scored) =>
        ml.Data.CreateEnumerable<ScoredRow>(scored, reuseRowObject: false).Select(r => r.Score).ToArray();

    /// <summary>Smooth random training images; validation: smooth good images and smooth images with a ±40 checkerboard patch.</summary>
    private static (IDataView Train, IDataView Validation) CheckerboardData(MLContext ml)
    {
        string folder = TestImages.NewDirectory();
        var random = new Random(4);
        const int size = 64;
        string Write(string name, byte[] rgb, int channels)
        {
            string path = Path.Combine(folder, name);
            PngEncoder.Write(path, rgb, size, size, channels);
            return path;
        }
        var train = Enumerable.Range(0, TrainCount).Select(i => new MvtecImage { ImagePath = Write($"train{i}.png", Smooth(random, size), 3) }).ToList();
        var validation = new List<MvtecImage>();
        for (int i = 0; i < ValidationPairs; i++)
        {
            validation.Add(new MvtecImage { ImagePath = Write($"good{i}.png", Smooth(random, size), 3) });
            byte[] defect = Smooth(random, size);
            var mask = new byte[size * size];
            for (int y = 16; y < 40; y++)
                for (int x = 20; x < 44; x++)
                {
                    mask[(y * size) + x] = 255;
                    for (int c = 0; c < 3; c++)
                        defect[(((y * size) + x) * 3) + c] = (byte)(defect[(((y * size) + x) * 3) + c] + ((x + y) % 2 == 0 ? 40 : -40));
                }
            validation.Add(new MvtecImage { ImagePath = Write($"defect{i}.png", defect, 3), Label = true, MaskPath = Write($"defect{i}_mask.png", mask, 1) });
        }
        return (ml.Data.LoadFromEnumerable(train), ml.Data.LoadFromEnumerable(validation));
    }

    /// <summary>Bilinear interpolation of a 5×5 grid of random values in [70, 185] per channel (so ±40 never clips).</summary>
    private static byte[] Smooth(Random random, int size)
    {
        const int grid = 5;
        var knots = new double[grid * grid * 3];
        for (int i = 0; i < knots.Length; i++)
            knots[i] = 70 + (115 * random.NextDouble());
        var rgb = new byte[size * size * 3];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                double gy = y * (grid - 1) / (double)(size - 1), gx = x * (grid - 1) / (double)(size - 1);
                int y0 = Math.Min((int)gy, grid - 2), x0 = Math.Min((int)gx, grid - 2);
                double ty = gy - y0, tx = gx - x0;
                for (int c = 0; c < 3; c++)
                {
                    double K(int yy, int xx) => knots[(((yy * grid) + xx) * 3) + c];
                    double top = K(y0, x0) + ((K(y0, x0 + 1) - K(y0, x0)) * tx), bottom = K(y0 + 1, x0) + ((K(y0 + 1, x0 + 1) - K(y0 + 1, x0)) * tx);
                    rgb[(((y * size) + x) * 3) + c] = (byte)Math.Round(top + ((bottom - top) * ty));
                }
            }
        return rgb;
    }

    private sealed class SynchronousProgress(Action<SweepProgress> report) : IProgress<SweepProgress>
    {
        public void Report(SweepProgress value) => report(value);
    }
}
