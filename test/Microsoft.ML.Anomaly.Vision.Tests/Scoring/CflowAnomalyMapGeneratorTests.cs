using Microsoft.ML.Anomaly.Vision.Cflow;

namespace Microsoft.ML.Anomaly.Vision.Tests.Scoring;

[TestClass]
public sealed class CflowAnomalyMapGeneratorTests
{
    private static readonly (int Height, int Width)[] Grids = [(4, 4), (2, 2)];

    [TestMethod]
    public void AnImageUnlikelyEverywhereScoresHigherThanALikelyOneWithTheSameShape()
    {
        // Image 1 is image 0 two nats per dimension less likely everywhere.
        var logLikelihoods = Grids.Select((g, l) =>
        {
            int n = g.Height * g.Width;
            var values = new float[2 * n];
            for (int p = 0; p < n; p++)
            {
                values[p] = -1f - 0.1f * p - l;
                values[n + p] = values[p] - 2f;
            }
            return values;
        }).ToArray();
        var references = new[] { -1f, -2f };

        var (fixedLikely, fixedUnlikely) = Scores(new CflowAnomalyMapGenerator(Grids, references, 8, 8), logLikelihoods);
        Assert.IsGreaterThan(fixedLikely + 0.5f, fixedUnlikely, $"likely {fixedLikely}, unlikely {fixedUnlikely}");

        // The per-image normalisation of models saved without references sees the same shape twice.
        var (perImageLikely, perImageUnlikely) = Scores(new CflowAnomalyMapGenerator(Grids, null, 8, 8), logLikelihoods);
        Assert.AreEqual(perImageLikely, perImageUnlikely, 1e-6f);
    }

    [TestMethod]
    public void MapIsTheLayerCountMinusTheSummedClampedProbabilities()
    {
        // One layer on a 1×1 grid: the map is constant.
        var generator = new CflowAnomalyMapGenerator([(1, 1)], [-3f], 2, 2);
        var map = new float[4];
        float score = generator.Generate([[-4f, -2f]], 0, map);
        float expected = 1f - MathF.Exp(-1f);
        Assert.AreEqual(expected, score, 1e-6f);
        foreach (float value in map)
            Assert.AreEqual(expected, value, 1e-6f);

        // Above the reference the probability is 1 and the map 0.
        Assert.AreEqual(0f, generator.Generate([[-4f, -2f]], 1, map), 1e-6f);
    }

    private static (float First, float Second) Scores(CflowAnomalyMapGenerator generator, float[][] logLikelihoods)
    {
        var map = new float[64];
        float first = generator.Generate(logLikelihoods, 0, map);
        float second = generator.Generate(logLikelihoods, 1, map);
        return (first, second);
    }
}
