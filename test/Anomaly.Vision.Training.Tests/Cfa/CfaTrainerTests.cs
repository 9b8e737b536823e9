using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class CfaTrainerTests
{
    [TestMethod]
    public void TrainingLowersTheLossAndReportsEveryStage()
    {
        var recorder = new CfaTestData.Recorder();
        var model = CfaTrainer.Train(CfaTestData.Source(CfaTestData.Maps(6, seed: 2)), CfaTestData.Options(epochs: 6), recorder);

        var bankReports = recorder.Reports.Where(r => r.Stage == "memory bank").ToList();
        CollectionAssert.AreEqual(new[] { 4, 6 }, bankReports.Select(r => r.Step).ToArray());
        Assert.IsTrue(bankReports.All(r => r.Steps == 6 && double.IsNaN(r.Loss)));
        var epochs = recorder.Reports.Where(r => r.Stage == "training").ToList();
        CollectionAssert.AreEqual(Enumerable.Range(1, 6).ToArray(), epochs.Select(r => r.Step).ToArray());
        Assert.IsTrue(epochs.All(r => r.Steps == 6 && double.IsFinite(r.Loss) && r.Loss >= 0));
        Assert.IsLessThan(epochs[0].Loss, epochs[^1].Loss, $"losses {string.Join(", ", epochs.Select(r => r.Loss))}");

        Assert.AreEqual(8, model.GridHeight);
        Assert.AreEqual(8, model.GridWidth);
        Assert.AreEqual(12, model.InputChannels);
        Assert.AreEqual(12, model.DescriptorChannels);
        Assert.AreEqual(64, model.BankSize);
        Assert.AreEqual(3, model.NumNearestNeighbors);
        Assert.AreEqual(12 * 14, model.DescriptorWeight.Length);
    }

    [TestMethod]
    public void SameSeedGivesTheSameModelAndAnotherSeedDoesNot()
    {
        var source = CfaTestData.Source(CfaTestData.Maps(6, seed: 3));
        var a = CfaTrainer.Train(source, CfaTestData.Options(epochs: 2, seed: 11));
        var b = CfaTrainer.Train(source, CfaTestData.Options(epochs: 2, seed: 11));
        var c = CfaTrainer.Train(source, CfaTestData.Options(epochs: 2, seed: 12));
        CollectionAssert.AreEqual(a.DescriptorWeight.ToArray(), b.DescriptorWeight.ToArray());
        CollectionAssert.AreEqual(a.DescriptorBias.ToArray(), b.DescriptorBias.ToArray());
        CollectionAssert.AreEqual(a.MemoryBank.ToArray(), b.MemoryBank.ToArray());
        CollectionAssert.AreNotEqual(a.DescriptorWeight.ToArray(), c.DescriptorWeight.ToArray());
    }

    [TestMethod]
    public void ChunkedStepsTrainTheSameModelAsWholeBatches()
    {
        var source = CfaTestData.Source(CfaTestData.Maps(6, seed: 7));
        // One epoch: LibTorch's products of other shapes round differently, and on some processors (an AMD EPYC with
        // AVX-512) further Adam epochs carry that past the tolerance (1.2e-5 after two).
        var options = CfaTestData.Options(epochs: 1);
        // LibTorch's search, 4 KiB: one image per chunk and 16 of the 64 bank entries per distance convolution.
        var chunked = CfaTrainer.Train(source, options, null, default, chunkBytes: 4096, cpuKernels: false);
        var whole = CfaTrainer.Train(source, options, null, default, chunkBytes: 1L << 40, cpuKernels: false);
        AssertClose(whole, chunked);
        var untrained = CfaTrainer.Train(source, CfaTestData.Options(epochs: 0), null, default, chunkBytes: 4096, cpuKernels: false);
        Assert.IsGreaterThan(1e-3f, whole.DescriptorWeight.ToArray().Zip(untrained.DescriptorWeight.ToArray(), (a, b) => Math.Abs(a - b)).Max());
    }

    [TestMethod]
    public void FusedKernelTrainsTheSameModelAsLibTorchWithTheSameLossesAndScores()
    {
        // Larger than the tiny layers so that the kernel's 512-bit panels (64 entries) and blocks (192 patches) are
        // exceeded: 16×16 grid = 256 patches and bank entries, 24 + 2 input channels.
        LayerShape[] layers = { new(16, 16, 16), new(8, 8, 8) };
        var source = CfaTestData.Source(CfaTestData.Maps(5, seed: 9, layers), layers);
        var options = CfaTestData.Options(epochs: 4);
        var fusedLosses = new CfaTestData.Recorder();
        var libTorchLosses = new CfaTestData.Recorder();
        var fused = CfaTrainer.Train(source, options, fusedLosses, default, chunkBytes: null, cpuKernels: true);
        var libTorch = CfaTrainer.Train(source, options, libTorchLosses, default, chunkBytes: null, cpuKernels: false);

        double[] Losses(CfaTestData.Recorder r) => r.Reports.Where(p => p.Stage == "training").Select(p => p.Loss).ToArray();
        var expected = Losses(libTorchLosses);
        var actual = Losses(fusedLosses);
        Assert.HasCount(4, actual);
        Assert.IsLessThan(expected[0], expected[^1], "the model learns");
        for (int e = 0; e < expected.Length; e++)
            Assert.AreEqual(expected[e], actual[e], 1e-4 * Math.Max(1, Math.Abs(expected[e])), $"epoch {e + 1} loss");
        AssertClose(libTorch, fused);

        // Scores: the nearest distances of a held-out image's features under both models.
        var image = CfaTestData.Maps(1, seed: 99, layers)[0];
        int patches = 256, d = fused.DescriptorChannels;
        float[] Scores(CfaModel model)
        {
            var features = new float[patches * d];
            model.Describe(image, 1, features);
            var distances = new float[patches * 3];
            new MemoryBankScorer(model.MemoryBank.ToArray(), model.BankSize, d).NearestSquaredDistances(features, patches, 3, distances);
            return distances;
        }
        var expectedScores = Scores(libTorch);
        var actualScores = Scores(fused);
        for (int i = 0; i < expectedScores.Length; i++)
            Assert.AreEqual(expectedScores[i], actualScores[i], 1e-4f * Math.Max(1f, expectedScores[i]), $"distance {i}");
    }

    [TestMethod]
    public void TheBoundThatSkipsBankEntriesDoesNotChangeTheTrainedModelOrItsLosses()
    {
        LayerShape[] layers = { new(16, 16, 16), new(8, 8, 8) };
        var source = CfaTestData.Source(CfaTestData.Maps(5, seed: 11, layers), layers);
        var options = CfaTestData.Options(epochs: 3);
        var fullLosses = new CfaTestData.Recorder();
        var prunedLosses = new CfaTestData.Recorder();
        var full = CfaTrainer.Train(source, options, fullLosses, default, chunkBytes: null, cpuKernels: true, projectionRank: 0);
        var pruned = CfaTrainer.Train(source, options, prunedLosses, default, chunkBytes: null, cpuKernels: true, projectionRank: 4);

        CollectionAssert.AreEqual(fullLosses.Reports.Select(r => r.Loss).ToArray(), prunedLosses.Reports.Select(r => r.Loss).ToArray());
        CollectionAssert.AreEqual(full.DescriptorWeight.ToArray(), pruned.DescriptorWeight.ToArray());
        CollectionAssert.AreEqual(full.DescriptorBias.ToArray(), pruned.DescriptorBias.ToArray());
        CollectionAssert.AreEqual(full.MemoryBank.ToArray(), pruned.MemoryBank.ToArray());
    }

    private static void AssertClose(CfaModel expected, CfaModel actual)
    {
        AssertClose(expected.MemoryBank.ToArray(), actual.MemoryBank.ToArray(), "bank");
        AssertClose(expected.DescriptorWeight.ToArray(), actual.DescriptorWeight.ToArray(), "weight");
        AssertClose(expected.DescriptorBias.ToArray(), actual.DescriptorBias.ToArray(), "bias");

        static void AssertClose(float[] expected, float[] actual, string what)
        {
            Assert.HasCount(expected.Length, actual);
            for (int i = 0; i < expected.Length; i++)
                Assert.AreEqual(expected[i], actual[i], 1e-5f * Math.Max(1f, Math.Abs(expected[i])), $"{what} {i}");
        }
    }

    [TestMethod]
    public void GammaOptionsShrinkTheDescriptorAndClusterTheBank()
    {
        var options = CfaTestData.Options(epochs: 1);
        options.GammaC = 2;
        options.GammaD = 4;
        var model = CfaTrainer.Train(CfaTestData.Source(CfaTestData.Maps(6, seed: 4)), options);
        Assert.AreEqual(3, model.DescriptorChannels);           // 12 / 4
        Assert.AreEqual(32, model.BankSize);                    // 64 / 2
        Assert.AreEqual(32 * 3, model.MemoryBank.Length);
        Assert.AreEqual(3 * 14, model.DescriptorWeight.Length);
    }

    [TestMethod]
    public void EmptySourceIsRejected()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() =>
            CfaTrainer.Train(new InMemoryFeatureSource(CfaTestData.TinyLayers), CfaTestData.Options()));
        Assert.AreEqual("features", e.ParamName);
    }

    [TestMethod]
    public void BankSmallerThanTheNeighboursTheLossNeedsIsRejected()
    {
        var options = CfaTestData.Options();
        options.GammaC = 16;                                    // 64 / 16 = 4 entries < 3 + 3
        var e = Assert.ThrowsExactly<ArgumentException>(() =>
            CfaTrainer.Train(CfaTestData.Source(CfaTestData.Maps(2, seed: 5)), options));
        Assert.AreEqual("options", e.ParamName);
        StringAssert.Contains(e.Message, "4 entries");
    }

    [TestMethod]
    public void NonFiniteFeatureIsRejectedNamingTheImage()
    {
        var maps = CfaTestData.Maps(6, seed: 6);
        maps[3][1][5] = float.NaN;
        var e = Assert.ThrowsExactly<ArgumentException>(() => CfaTrainer.Train(CfaTestData.Source(maps), CfaTestData.Options()));
        StringAssert.Contains(e.Message, "Image 3");
        Assert.AreEqual("features", e.ParamName);
    }

    [TestMethod]
    public void InvalidOptionIsRejected()
    {
        var options = CfaTestData.Options();
        options.BatchSize = 0;
        var e = Assert.ThrowsExactly<ArgumentException>(() => CfaTrainer.Train(CfaTestData.Source(CfaTestData.Maps(2, seed: 7)), options));
        StringAssert.Contains(e.Message, "BatchSize");
    }

    [TestMethod]
    public void CancellationStopsBetweenSteps()
    {
        using var cts = new CancellationTokenSource();
        var recorder = new CfaTestData.Recorder { OnReport = r => { if (r.Stage == "training") cts.Cancel(); } };
        Assert.ThrowsExactly<OperationCanceledException>(() =>
            CfaTrainer.Train(CfaTestData.Source(CfaTestData.Maps(6, seed: 8)), CfaTestData.Options(epochs: 5), recorder, cts.Token));
        Assert.AreEqual(1, recorder.Reports.Count(r => r.Stage == "training"));
    }
}
