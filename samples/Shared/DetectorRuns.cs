using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;
using Spectre.Console;

namespace AnomalyVision.Samples;

/// <summary>One scored test image, as read back from the transformed data.</summary>
internal sealed class ScoredImage
{
    public string ImagePath { get; set; } = "";
    public bool Label { get; set; }
    public string DefectType { get; set; } = "";
    public string MaskPath { get; set; } = "";
    public float Score { get; set; }
    public float[] AnomalyMap { get; set; } = [];
}

/// <summary>Routes the detectors' progress reports to the progress bar that is showing.</summary>
internal sealed class FitProgress : IProgress<TrainingProgress>
{
    public static readonly FitProgress Instance = new();

    public static Action<TrainingProgress>? Sink { get; set; }

    public void Report(TrainingProgress value) => Sink?.Invoke(value);
}

/// <summary>A test set scored by a fitted detector and evaluated.</summary>
/// <param name="Scored">The transformed test set, cached.</param>
/// <param name="Metrics">The evaluation.</param>
/// <param name="ImagesPerSecond">Scoring throughput, image decoding included.</param>
internal sealed record ScoredTestSet(IDataView Scored, ImageAnomalyMetrics Metrics, double ImagesPerSecond);

/// <summary>The samples' shared steps: fit with a progress bar, then score and evaluate a test set.</summary>
internal static class DetectorRuns
{
    /// <summary>Fits <paramref name="estimator"/> (whose options report to <see cref="FitProgress.Instance"/>) with a progress bar per stage.</summary>
    /// <remarks>
    /// The bars are redrawn on the fitting thread, when a report arrives, not by a timer thread: TorchSharp passes
    /// temporary scalars to native code without keeping them alive, and a garbage collection started by another
    /// thread during such a call can free one under it (seen once in a 256 px CFlow run as a native "toFloat" error).
    /// </remarks>
    public static (ITransformer Model, double Seconds) FitWithProgress(IEstimator<ITransformer> estimator, IDataView train)
    {
        var watch = Stopwatch.StartNew();
        ITransformer model = null!;
        AnsiConsole.Progress().AutoClear(false).AutoRefresh(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(context =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                FitProgress.Sink = report =>
                {
                    if (!tasks.TryGetValue(report.Stage, out var task))
                        tasks[report.Stage] = task = context.AddTask(report.Stage);
                    task.MaxValue = Math.Max(1, report.Steps);
                    task.Value = report.Step;
                    if (!double.IsNaN(report.Loss))
                        task.Description = $"{report.Stage} (loss {report.Loss:G4})";
                    context.Refresh();
                };
                model = estimator.Fit(train);
                foreach (var task in tasks.Values)
                    task.Value = task.MaxValue;
            });
        FitProgress.Sink = null;
        return (model, watch.Elapsed.TotalSeconds);
    }

    /// <summary>Scores <paramref name="test"/> once (cached) and evaluates it, with pixel metrics when the detector gives maps.</summary>
    public static ScoredTestSet ScoreAndEvaluate(MLContext mlContext, ITransformer model, IDataView test)
    {
        var watch = Stopwatch.StartNew();
        IDataView scored = mlContext.Data.Cache(model.Transform(test));
        bool maps = scored.Schema.GetColumnOrNull("AnomalyMap") is not null;
        // One pass over every scored column fills the cache; evaluation and callers read it from there.
        var columns = scored.Schema.Where(c => c.Name is "Score" or "AnomalyMap").ToArray();
        int images = 0;
        using (var cursor = scored.GetRowCursor(columns))
        {
            var score = cursor.GetGetter<float>(scored.Schema["Score"]);
            var map = maps ? cursor.GetGetter<VBuffer<float>>(scored.Schema["AnomalyMap"]) : null;
            float value = 0;
            VBuffer<float> values = default;
            while (cursor.MoveNext())
            {
                score(ref value);
                map?.Invoke(ref values);
                images++;
            }
        }
        double imagesPerSecond = images / watch.Elapsed.TotalSeconds;
        var metrics = mlContext.AnomalyDetection.EvaluateImageAnomalies(scored, anomalyMapColumnName: maps ? "AnomalyMap" : null);
        return new ScoredTestSet(scored, metrics, imagesPerSecond);
    }
}
