using System.Globalization;
using System.Text;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>One trial of a sweep: its configuration, validation metrics and costs.</summary>
public sealed class SweepTrialResult
{
    internal SweepTrialResult(int number, SweepDetector detector, int imageSize, IReadOnlyList<KeyValuePair<string, string>> settings)
    {
        Number = number;
        Detector = detector;
        ImageSize = imageSize;
        Settings = settings;
    }

    /// <summary>The trial's number, 1-based, in the order trials ran.</summary>
    public int Number { get; }

    /// <summary>The detector.</summary>
    public SweepDetector Detector { get; }

    /// <summary>Input height and width in pixels.</summary>
    public int ImageSize { get; }

    /// <summary>The searched settings and their values, in the search space's order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Settings { get; }

    /// <summary>Validation metrics; null when the trial failed.</summary>
    public ImageAnomalyMetrics? Metrics { get; internal set; }

    /// <summary>The optimised metric's value; null when the trial failed or has no value for it (pixel metrics of a detector without maps).</summary>
    public double? MetricValue { get; internal set; }

    /// <summary>
    /// Seconds a standalone Fit of this configuration takes: the training-feature extraction of its size group plus the
    /// trial's own training (in the sweep the extraction is shared, so the sweep's wall time is below the sum).
    /// </summary>
    public double FitSeconds { get; internal set; }

    /// <summary>Seconds of the trial's own training on the shared features.</summary>
    public double TrainSeconds { get; internal set; }

    /// <summary>
    /// Seconds a standalone scoring of the validation set by this trial's model takes: the validation images' share of
    /// the backbone (shared in the sweep) plus the detector's own scoring.
    /// </summary>
    public double ValidationSeconds { get; internal set; }

    /// <summary>Validation images scored per second end to end: the backbone's share of its size group plus the detector's own scoring.</summary>
    public double ScoringImagesPerSecond { get; internal set; }

    /// <summary>Why the trial failed, or null.</summary>
    public string? Error { get; internal set; }

    /// <summary>The fitted model when <see cref="ImageDetectorSweepOptions.KeepAllModels"/> is set (and for the best trial); disposed with the <see cref="SweepResult"/>.</summary>
    public BackboneAnomalyTransformerBase? Model { get; internal set; }

    /// <summary>"CFA 128px Layers=layer1+layer2+layer3 GammaC=1 ...".</summary>
    public string Description =>
        string.Create(CultureInfo.InvariantCulture, $"{Detector.ToString().ToUpperInvariant()} {ImageSize}px ") + string.Join(' ', Settings.Select(s => s.Key + "=" + s.Value));

    /// <inheritdoc />
    public override string ToString() => Description;
}

/// <summary>Backbone features extracted once and shared by every trial of one input size.</summary>
/// <param name="ImageSize">Input height and width.</param>
/// <param name="Backbone">The backbone's file name.</param>
/// <param name="Layers">The layers extracted (the union of what the size's trials read).</param>
/// <param name="TrainingImages">Training images run through the backbone.</param>
/// <param name="ValidationImages">Validation images run through the backbone.</param>
/// <param name="Seconds">Seconds of the extraction.</param>
public sealed record SweepFeatureExtraction(int ImageSize, string Backbone, IReadOnlyList<string> Layers, int TrainingImages, int ValidationImages, double Seconds);

/// <summary>What a sweep found: the leaderboard, the best fitted model and what the sweep cost.</summary>
public sealed class SweepResult : IDisposable
{
    internal SweepResult(IReadOnlyList<SweepTrialResult> trials, SweepMetric metric, bool syntheticValidation, int trainingImages,
        int validationImages, int seed, IReadOnlyList<SweepFeatureExtraction> extractions, double wallSeconds, bool timeBudgetReached)
    {
        Trials = trials;
        Metric = metric;
        SyntheticValidation = syntheticValidation;
        TrainingImages = trainingImages;
        ValidationImages = validationImages;
        Seed = seed;
        FeatureExtractions = extractions;
        WallSeconds = wallSeconds;
        TimeBudgetReached = timeBudgetReached;
        Leaderboard = Rank(trials.Where(t => t.MetricValue.HasValue)).Concat(trials.Where(t => !t.MetricValue.HasValue)).ToArray();
        BestTrial = Leaderboard.Count > 0 && Leaderboard[0].MetricValue.HasValue ? Leaderboard[0] : null;
    }

    /// <summary>The trials in the order they ran.</summary>
    public IReadOnlyList<SweepTrialResult> Trials { get; }

    /// <summary>
    /// The trials best first by <see cref="Metric"/>; ties (common: synthetic defects often give several trials an image
    /// AUROC of 1) go to the larger sum of all the trial's validation metrics, then to the earlier trial; trials without a
    /// value come last.
    /// </summary>
    public IReadOnlyList<SweepTrialResult> Leaderboard { get; }

    /// <summary>The best trial, or null when no trial has a metric value.</summary>
    public SweepTrialResult? BestTrial { get; }

    /// <summary>The best trial's fitted transformer (trained on the training images less any held out); disposed with this result.</summary>
    public BackboneAnomalyTransformerBase? BestModel => BestTrial?.Model;

    /// <summary>The metric the sweep maximised.</summary>
    public SweepMetric Metric { get; }

    /// <summary>Whether validation used synthetic defects on held-out training images (no labelled validation set was given).</summary>
    public bool SyntheticValidation { get; }

    /// <summary>Images the trials trained on.</summary>
    public int TrainingImages { get; }

    /// <summary>Validation images (good and defective).</summary>
    public int ValidationImages { get; }

    /// <summary>The seed used.</summary>
    public int Seed { get; }

    /// <summary>Feature extractions, one per input size (each shared by that size's trials).</summary>
    public IReadOnlyList<SweepFeatureExtraction> FeatureExtractions { get; }

    /// <summary>Images run through the backbone in all (training and validation, every size).</summary>
    public int BackboneImagesProcessed => FeatureExtractions.Sum(e => e.TrainingImages + e.ValidationImages);

    /// <summary>The sweep's wall-clock seconds, from Fit's start to its results (outputs included).</summary>
    public double WallSeconds { get; internal set; }

    /// <summary>The trials' summed <see cref="SweepTrialResult.FitSeconds"/>: what fitting each configuration on its own would cost.</summary>
    public double SummedStandaloneFitSeconds => Trials.Sum(t => t.FitSeconds);

    /// <summary>
    /// The trials' summed standalone fit and validation seconds (<see cref="SweepTrialResult.FitSeconds"/> +
    /// <see cref="SweepTrialResult.ValidationSeconds"/>): what running each configuration on its own would cost, to compare
    /// with <see cref="WallSeconds"/>.
    /// </summary>
    public double SummedStandaloneSeconds => Trials.Sum(t => t.FitSeconds + t.ValidationSeconds);

    /// <summary>Whether the time budget stopped the sweep before all planned trials ran.</summary>
    public bool TimeBudgetReached { get; }

    /// <summary>Orders trials that have a metric value best first, as <see cref="Leaderboard"/> does.</summary>
    internal static IEnumerable<SweepTrialResult> Rank(IEnumerable<SweepTrialResult> trials) =>
        trials.OrderByDescending(t => t.MetricValue!.Value).ThenByDescending(MetricSum).ThenBy(t => t.Number);

    private static double MetricSum(SweepTrialResult trial)
    {
        ImageAnomalyMetrics m = trial.Metrics!;
        return m.ImageAuroc + m.ImageF1Max + (m.PixelAuroc ?? 0) + (m.PixelF1Max ?? 0) + (m.Aupro ?? 0);
    }

    /// <summary>The leaderboard as a text table (best first).</summary>
    /// <param name="top">Rows to show; null for all.</param>
    public string ToLeaderboardString(int? top = null)
    {
        static string F(double? v) => v is double d ? d.ToString("F4", CultureInfo.InvariantCulture) : "  –   ";
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture,
            $"{"rank",4} {"trial",5} {Metric,-11} {"imgAUROC",8} {"pixAUROC",8} {"AUPRO",6} {"fit s",7} {"img/s",7}  configuration\n");
        int rank = 0;
        foreach (SweepTrialResult t in Leaderboard.Take(top ?? int.MaxValue))
        {
            rank++;
            text.Append(CultureInfo.InvariantCulture,
                $"{rank,4} {t.Number,5} {F(t.MetricValue),-11} {F(t.Metrics?.ImageAuroc),8} {F(t.Metrics?.PixelAuroc),8} {F(t.Metrics?.Aupro),6} {t.FitSeconds,7:F1} {t.ScoringImagesPerSecond,7:F1}  {t.Description}");
            if (t.Error is not null)
                text.Append("  FAILED: ").Append(t.Error);
            text.Append('\n');
        }
        text.Append(CultureInfo.InvariantCulture,
            $"{Trials.Count} trials, {(SyntheticValidation ? "synthetic" : "labelled")} validation ({ValidationImages} images), wall {WallSeconds:F1} s, " +
            $"standalone fits {SummedStandaloneFitSeconds:F1} s + validations {SummedStandaloneSeconds - SummedStandaloneFitSeconds:F1} s = " +
            $"{SummedStandaloneSeconds:F1} s, {FeatureExtractions.Count} feature extraction(s)");
        if (TimeBudgetReached)
            text.Append(", stopped by the time budget");
        return text.Append('\n').ToString();
    }

    /// <summary>Disposes the kept models (the best one included).</summary>
    public void Dispose()
    {
        foreach (SweepTrialResult t in Trials)
        {
            t.Model?.Dispose();
            t.Model = null;
        }
    }
}
