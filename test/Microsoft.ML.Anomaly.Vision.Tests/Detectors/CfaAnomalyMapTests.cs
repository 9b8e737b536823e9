using Microsoft.ML.Anomaly.Vision.Cfa;

namespace Microsoft.ML.Anomaly.Vision.Tests.Detectors;

[TestClass]
public sealed class CfaAnomalyMapTests
{
    // Memory bank of three 2-D entries, patch-major.
    private static readonly float[] Bank = [0, 0, 3, 4, 6, 8];

    [TestMethod]
    public void UniformPatchesGiveTheHandComputedSoftminScoreEverywhere()
    {
        // Every patch is (0, 1): squared distances 1, 18, 85 → distances 1, √18, √85; k = 3.
        var generator = new CfaAnomalyMapGenerator(Bank, bankSize: 3, channels: 2, neighbors: 3, gridHeight: 2, gridWidth: 2, height: 8, width: 8);
        float[] features = [0, 1, 0, 1, 0, 1, 0, 1];
        var map = new float[64];
        var scores = new float[1];
        generator.Generate(features, 1, scores, map);
        float score = scores[0];

        double d0 = 1, d1 = Math.Sqrt(18), d2 = Math.Sqrt(85);
        double expected = Math.Exp(-d0) / (Math.Exp(-d0) + Math.Exp(-d1) + Math.Exp(-d2)) * d0;   // softmin weight of the nearest × nearest
        Assert.AreEqual(0.962158, expected, 1e-6);
        Assert.AreEqual(expected, score, 1e-5);
        foreach (float value in map)
            Assert.AreEqual(expected, value, 1e-5, "bilinear upsampling and a normalised blur keep a constant map constant");
    }

    [TestMethod]
    public void TheMapPeaksWhereThePatchIsFarFromTheBank()
    {
        var generator = new CfaAnomalyMapGenerator(Bank, bankSize: 3, channels: 2, neighbors: 1, gridHeight: 2, gridWidth: 2, height: 64, width: 64);
        // Patches (row-major): three on bank entries, the bottom-right one 5 away from its nearest entry (0, 0).
        float[] features = [0, 0, 3, 4, 6, 8, -3, -4];
        var map = new float[64 * 64];
        var scores = new float[1];
        generator.Generate(features, 1, scores, map);
        float score = scores[0];

        int peak = Array.IndexOf(map, map.Max());
        Assert.IsTrue(peak / 64 >= 32 && peak % 64 >= 32, $"peak at ({peak / 64}, {peak % 64}) is not in the bottom-right quadrant");
        Assert.AreEqual(map.Max(), score);
        Assert.IsTrue(score > 0 && score < 5, "the blur spreads the single far patch's distance 5 (k = 1: softmin weight 1)");
        Assert.AreEqual(0f, map[0], 0.05f, "the top-left corner is far from the anomalous patch");
    }

    [TestMethod]
    public void ImagesScoredTogetherGetTheMapsAndScoresTheyGetAlone()
    {
        var generator = new CfaAnomalyMapGenerator(Bank, bankSize: 3, channels: 2, neighbors: 2, gridHeight: 2, gridWidth: 2, height: 16, width: 16);
        float[][] images = [[0, 0, 3, 4, 6, 8, -3, -4], [0, 1, 0, 1, 5, 5, 0, 1], [1, 1, 2, 2, 3, 3, 4, 4]];
        var together = new float[3 * 256];
        var togetherScores = new float[3];
        generator.Generate(images.SelectMany(f => f).ToArray(), 3, togetherScores, together);
        for (int i = 0; i < 3; i++)
        {
            var alone = new float[256];
            var score = new float[1];
            generator.Generate(images[i], 1, score, alone);
            CollectionAssert.AreEqual(alone, together.AsSpan(i * 256, 256).ToArray(), $"map of image {i}");
            Assert.AreEqual(score[0], togetherScores[i], $"score of image {i}");
        }
        Assert.AreNotEqual(togetherScores[0], togetherScores[1]);
    }
}
