using Anomaly.Vision.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class MemoryBankTests
{
    [TestMethod]
    public void BankIsTheMeanOfBatchMeansOfTheUntrainedDescriptorPatchMajor()
    {
        var maps = CfaTestData.Maps(6, seed: 1);
        // No epochs: the model keeps the initial descriptor that built the bank.
        var model = CfaTrainer.Train(CfaTestData.Source(maps), CfaTestData.Options(epochs: 0, batchSize: 4));
        int patches = 64, d = model.DescriptorChannels;
        Assert.AreEqual(12, d);
        Assert.AreEqual(patches, model.BankSize);

        var perImage = new float[6][];
        for (int i = 0; i < 6; i++)
        {
            perImage[i] = new float[patches * d];
            model.Describe(new[] { maps[i][0], maps[i][1] }, 1, perImage[i]);
        }
        // Batches {0,1,2,3} and {4,5}: bank = (mean of 0..3 + mean of 4..5) / 2, which weighs images 4 and 5 twice as much.
        var bank = model.MemoryBank.ToArray();
        double maxPlainMeanGap = 0;
        for (int j = 0; j < patches * d; j++)
        {
            double first = (perImage[0][j] + perImage[1][j] + perImage[2][j] + perImage[3][j]) / 4;
            double second = (perImage[4][j] + perImage[5][j]) / 2;
            Assert.AreEqual((first + second) / 2, bank[j], 1e-5, $"value {j}");
            double plain = Enumerable.Range(0, 6).Average(i => perImage[i][j]);
            maxPlainMeanGap = Math.Max(maxPlainMeanGap, Math.Abs(plain - bank[j]));
        }
        Assert.IsGreaterThan(1e-3, maxPlainMeanGap, "the bank is the mean of batch means, not the plain mean");
    }

    [TestMethod]
    public void SquaredDistancesMatchHandComputation()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        // Two channels, a 1×2 grid: patch 0 = (1, 2), patch 1 = (−1, 0). Bank: (0, 0), (1, 1), (3, −1).
        var features = CfaTensors.FromArray(new float[] { 1, -1, 2, 0 }, new long[] { 1, 2, 1, 2 });
        var bank = CfaTensors.FromArray(new float[] { 0, 0, 1, 1, 3, -1 }, new long[] { 3, 2 });
        var d = CfaTensors.ToArray(MemoryBank.SquaredDistances(features, bank.reshape(3, 2, 1, 1), MemoryBank.SquaredNorms(bank)));
        // layout [1, 3, 1, 2]: entry-major, then patch
        float[] expected = { 5, 1, 1, 5, 13, 17 };
        for (int i = 0; i < 6; i++)
            Assert.AreEqual(expected[i], d[i], 1e-5f, $"index {i}");
    }

    [TestMethod]
    [DataRow(9L, DisplayName = "whole bank")]
    [DataRow(4L, DisplayName = "chunks of 4, 4, 1 entries")]
    [DataRow(2L, DisplayName = "chunks of 2 entries, fewer than k")]
    public void NearestDistancesAndClosedFormGradientEqualAutogradThroughTheDenseDistances(long entriesPerChunk)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var random = new Random(12);
        float[] Rand(int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        // 2 images, 5 channels on a 3×4 grid; bank of 9 entries; k = 2 + 3; radius large enough for both loss terms to act.
        var bank = CfaTensors.FromArray(Rand(9 * 5, 1f), new long[] { 9, 5 });
        var input = CfaTensors.FromArray(Rand(2 * 5 * 12, 1f), new long[] { 2, 5, 3, 4 });
        float radius = 1.6f;

        var w1 = CfaTensors.FromArray(Rand(25, 0.5f), new long[] { 5, 5, 1, 1 }).requires_grad_(true);
        var dense = MemoryBank.SquaredDistances(F.conv2d(input, w1), bank.reshape(9, 5, 1, 1), MemoryBank.SquaredNorms(bank));
        var denseLoss = CfaLoss.Compute(dense, 1, 2, 3, radius);
        denseLoss.backward();

        var w2 = w1.detach().clone().requires_grad_(true);
        var features = F.conv2d(input, w2);
        var (nearest, indices) = MemoryBank.Nearest(features, (-2 * bank).reshape(9, 5, 1, 1), bank.pow(2).sum(1), 5, entriesPerChunk);
        CollectionAssert.AreEqual(new long[] { 2, 5, 3, 4 }, nearest.shape);
        var sortedDense = CfaTensors.ToArray(dense.topk(5, 1, largest: false).values);
        var nearestValues = CfaTensors.ToArray(nearest);
        for (int i = 0; i < sortedDense.Length; i++)
            Assert.AreEqual(sortedDense[i], nearestValues[i], 1e-5f, $"distance {i}");
        nearest.requires_grad_(true);
        var loss = CfaLoss.FromNearest(nearest, 1, 2, 3, radius);
        loss.backward();
        features.backward(new[] { MemoryBank.FeatureGradient(features, nearest.grad!, indices, bank) });

        Assert.AreEqual(denseLoss.item<float>(), loss.item<float>(), 1e-3f);
        Assert.IsGreaterThan(0f, denseLoss.item<float>());
        var g1 = CfaTensors.ToArray(w1.grad!);
        var g2 = CfaTensors.ToArray(w2.grad!);
        Assert.IsGreaterThan(0f, g1.Max(Math.Abs));
        for (int i = 0; i < g1.Length; i++)
            Assert.AreEqual(g1[i], g2[i], 1e-3f * Math.Max(1f, Math.Abs(g1[i])), $"gradient {i}");
    }

    [TestMethod]
    [DataRow(true, DisplayName = "Vector512 kernel")]
    [DataRow(false, DisplayName = "Vector256 kernel")]
    public void FusedKernelEntriesAndPatchMajorGradientEqualAutogradThroughTheDenseDistances(bool useVector512)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var random = new Random(13);
        float[] Rand(int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        // 2 images, 5 channels on a 3×4 grid; bank of 70 entries (more than one 64-entry panel); k = 2 + 3.
        const int entries = 70, channels = 5, k = 5;
        float[] bankValues = Rand(entries * channels, 1f);
        var bank = CfaTensors.FromArray(bankValues, new long[] { entries, channels });
        var input = CfaTensors.FromArray(Rand(2 * channels * 12, 1f), new long[] { 2, channels, 3, 4 });
        float radius = 0.9f;

        var w1 = CfaTensors.FromArray(Rand(25, 0.5f), new long[] { 5, 5, 1, 1 }).requires_grad_(true);
        var dense = MemoryBank.SquaredDistances(F.conv2d(input, w1), bank.reshape(entries, channels, 1, 1), MemoryBank.SquaredNorms(bank));
        var denseLoss = CfaLoss.Compute(dense, 1, 2, 3, radius);
        denseLoss.backward();
        var (denseNearest, denseEntries) = dense.topk(k, 1, largest: false);

        var w2 = w1.detach().clone().requires_grad_(true);
        var features = F.conv2d(input, w2);
        var patchMajor = CfaTensors.ToArray(features.permute(0, 2, 3, 1));
        var distances = new float[24 * k];
        var found = new int[24 * k];
        new MemoryBankScorer(bankValues, entries, channels, useVector512, depthBlock: 3, projectionRank: 0).Nearest(patchMajor, 24, k, distances, found);
        // Same entries and distances as top-k of the dense matrix (patch-major here, entry-major there).
        var expectedDistances = CfaTensors.ToArray(denseNearest.permute(0, 2, 3, 1));
        var expectedEntries = denseEntries.permute(0, 2, 3, 1).contiguous().data<long>().ToArray();
        for (int i = 0; i < distances.Length; i++)
        {
            Assert.AreEqual(expectedDistances[i], distances[i], 1e-5f, $"distance {i}");
            Assert.AreEqual(expectedEntries[i], (long)found[i], $"entry {i}");
        }

        var nearest = CfaTensors.FromArray(distances, new long[] { 2, 3, 4, k }).permute(0, 3, 1, 2).contiguous().requires_grad_(true);
        var loss = CfaLoss.FromNearest(nearest, 1, 2, 3, radius);
        loss.backward();
        var distanceGradient = CfaTensors.ToArray(nearest.grad!.permute(0, 2, 3, 1));
        var featureGradient = new float[patchMajor.Length];
        MemoryBank.FeatureGradient(patchMajor, distanceGradient, found, bankValues, channels, k, featureGradient);
        features.backward(new[] { CfaTensors.FromArray(featureGradient, new long[] { 2, 3, 4, channels }).permute(0, 3, 1, 2) });

        Assert.AreEqual(denseLoss.item<float>(), loss.item<float>(), 1e-3f);
        Assert.IsGreaterThan(0f, denseLoss.item<float>());
        var g1 = CfaTensors.ToArray(w1.grad!);
        var g2 = CfaTensors.ToArray(w2.grad!);
        Assert.IsGreaterThan(0f, g1.Max(Math.Abs));
        for (int i = 0; i < g1.Length; i++)
            Assert.AreEqual(g1[i], g2[i], 1e-3f * Math.Max(1f, Math.Abs(g1[i])), $"gradient {i}");
    }
}
