using System.Collections.Concurrent;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

namespace Microsoft.ML.Anomaly.Vision.Tests.Detectors;

/// <summary>
/// ML.NET's PredictionEngine disposes the transformer it was made from when it is disposed (it owns it by default).
/// Serving a model with one engine per thread, each disposed when its thread is done, must still give every row the
/// score a whole-data Transform gives, and the model must keep scoring afterwards.
/// </summary>
[TestClass]
public sealed class PredictionEngineConcurrencyTests
{
    private const int Threads = 8;
    private const int Rounds = 3;

    [TestMethod]
    [DataRow("cfa")]
    [DataRow("dfm-fre")]
    [DataRow("cflow")]
    public void EnginesOnEightThreadsDisposedWhileOthersScoreGiveTheSequentialScores(string detector)
    {
        var ml = new MLContext(seed: 1);
        ITransformer model = DetectorFixture.Estimator(ml, detector).Fit(DetectorFixture.Train(ml));
        IDataView test = DetectorFixture.Test(ml);
        float[] sequential = ml.Data.CreateEnumerable<ScoredRow>(model.Transform(test), reuseRowObject: false).Select(r => r.Score).ToArray();
        ImagePathRow[] rows = ml.Data.CreateEnumerable<ImagePathRow>(test, reuseRowObject: false).ToArray();

        var failures = new ConcurrentQueue<string>();
        using var start = new Barrier(Threads);
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                // Each round a new engine, disposed (and with it, by ML.NET's default, the model) while other threads score.
                for (int round = 0; round < Rounds; round++)
                {
                    using var engine = ml.Model.CreatePredictionEngine<ImagePathRow, ScoredRow>(model);
                    for (int i = (t + round) % rows.Length, n = 0; n < rows.Length; i = (i + 1) % rows.Length, n++)
                    {
                        float score = engine.Predict(rows[i]).Score;
                        if (Math.Abs(score - sequential[i]) > 1e-4f * Math.Max(1f, Math.Abs(sequential[i])))
                            failures.Enqueue($"thread {t}, round {round}, row {i}: {score}, sequentially {sequential[i]}");
                    }
                }
            }
            catch (Exception e)
            {
                failures.Enqueue($"thread {t}: {e.GetType().Name}: {e.Message}");
            }
        })).ToList();
        threads.ForEach(thread => thread.Start());
        threads.ForEach(thread => thread.Join());
        Assert.IsEmpty(failures, string.Join(Environment.NewLine, failures.Take(10)));

        float[] after = ml.Data.CreateEnumerable<ScoredRow>(model.Transform(test), reuseRowObject: false).Select(r => r.Score).ToArray();
        CollectionAssert.AreEqual(sequential, after, "the model scores as before once every engine is disposed");
        (model as IDisposable)?.Dispose();
        float[] reopened = ml.Data.CreateEnumerable<ScoredRow>(model.Transform(test), reuseRowObject: false).Select(r => r.Score).ToArray();
        CollectionAssert.AreEqual(sequential, reopened, "a disposed model reopens its backbone when used again");
    }
}
