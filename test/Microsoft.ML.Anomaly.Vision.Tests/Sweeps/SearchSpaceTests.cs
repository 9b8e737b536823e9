using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Tests.Detectors;

namespace Microsoft.ML.Anomaly.Vision.Tests.Sweeps;

[TestClass]
public sealed class SearchSpaceTests
{
    [TestMethod]
    public void RangesGiveEvenlySpacedGridValuesAndDrawWithinTheirBounds()
    {
        CollectionAssert.AreEqual(new[] { 1, 2, 4 }, SearchParameter.Range(1, 4, gridPoints: 3).GridValues.ToArray(), "2.5 rounds to even");
        CollectionAssert.AreEqual(new[] { 0.5f, 0.75f, 1f }, SearchParameter.Range(0.5f, 1f, gridPoints: 3).GridValues.ToArray());
        CollectionAssert.AreEqual(new[] { 3 }, ((SearchParameter<int>)3).GridValues.ToArray());
        var random = new DeterministicRandom(9);
        SearchParameter<float> range = SearchParameter.Range(0.9f, 0.99f);
        SearchParameter<int> integers = SearchParameter.Range(2, 4);
        var drawn = new HashSet<int>();
        for (int i = 0; i < 200; i++)
        {
            float v = range.Sample(ref random);
            Assert.IsTrue(v >= 0.9f && v <= 0.99f, $"{v}");
            drawn.Add(integers.Sample(ref random));
        }
        CollectionAssert.AreEquivalent(new[] { 2, 3, 4 }, drawn.ToArray(), "both bounds of an integer range are drawn");
    }

    [TestMethod]
    public void TheGridIsTheCartesianProductOfTheSettingsAndSetsTheOptions()
    {
        var space = new DfmSearchSpace
        {
            Layer = new[] { "layer2", "layer3" }, PoolingKernelSize = new[] { 1, 2, 4 }, ScoreType = DfmScoreType.Nll,
            Configure = o => o.ScoringBatchSize = 3,
        };
        var plans = space.Grid().ToList();
        Assert.HasCount(6, plans);
        Assert.HasCount(6, plans.Select(p => p.Key).Distinct());
        var options = (DfmOptions)plans[5].CreateOptions();
        Assert.AreEqual("layer3", options.Layer);
        Assert.AreEqual(4, options.PoolingKernelSize);
        Assert.AreEqual(DfmScoreType.Nll, options.ScoreType);
        Assert.AreEqual(3, options.ScoringBatchSize, "Configure runs after the searched settings");
        CollectionAssert.AreEqual(new[] { "Layer", "PoolingKernelSize", "VarianceShare", "ScoreType" }, plans[0].Settings.Select(s => s.Key).ToArray());
    }

    [TestMethod]
    public void TiesOnTheMetricGoToTheLargerSumOfValidationMetricsThenToTheEarlierTrial()
    {
        static SweepTrialResult Trial(int number, double? metric, double pixelAuroc) => new(number, SweepDetector.Dfm, 32, [])
        {
            MetricValue = metric,
            Metrics = metric is null ? null : new ImageAnomalyMetrics { ImageAuroc = 1, ImageF1Max = 1, PixelAuroc = pixelAuroc },
        };
        var trials = new[] { Trial(1, 1.0, 0.80), Trial(2, 0.9, 0.99), Trial(3, 1.0, 0.85), Trial(4, null, 0), Trial(5, 1.0, 0.85) };
        var sweep = new SweepResult(trials, SweepMetric.ImageAuroc, syntheticValidation: true, 8, 4, 0, [], 1, timeBudgetReached: false);
        CollectionAssert.AreEqual(new[] { 3, 5, 1, 2, 4 }, sweep.Leaderboard.Select(t => t.Number).ToArray());
        Assert.AreSame(trials[2], sweep.BestTrial);
    }

    [TestMethod]
    public void AConfigurationADetectorRejectsFailsTheSweepBeforeAnyWorkAndNamesIt()
    {
        var ml = new MLContext(seed: 0);
        var sweep = ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions
        {
            BackbonePath = DetectorFixture.BackbonePath,
            InputColumnName = "ImagePath",
            SearchSpace = [new CflowSearchSpace { ConditionVectorSize = new[] { 64, 30 } }],
            Strategy = SweepStrategy.Grid,
        });
        var e = Assert.ThrowsExactly<ArgumentException>(() => sweep.Fit(DetectorFixture.Train(ml)));
        Assert.AreEqual("options", e.ParamName);
        StringAssert.Contains(e.Message, "ConditionVectorSize=30");
        var o = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.SweepImageDetectors(new ImageDetectorSweepOptions { MaxTrials = 0 }));
        Assert.AreEqual("options", o.ParamName);
    }
}
