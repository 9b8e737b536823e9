using Anomaly.Vision.Training;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>How a sweep picks its trials.</summary>
public enum SweepStrategy
{
    /// <summary>Every configuration of the grid, image sizes first, then detectors in order; cut at <see cref="ImageDetectorSweepOptions.MaxTrials"/>.</summary>
    Grid = 0,

    /// <summary>Distinct configurations drawn with the sweep's seed: a detector uniformly, then each setting.</summary>
    Random = 1,
}

/// <summary>The validation metric a sweep maximises.</summary>
public enum SweepMetric
{
    /// <summary><see cref="ImageAnomalyMetrics.ImageAuroc"/>.</summary>
    ImageAuroc = 0,

    /// <summary><see cref="ImageAnomalyMetrics.ImageF1Max"/>.</summary>
    ImageF1Max = 1,

    /// <summary><see cref="ImageAnomalyMetrics.PixelAuroc"/> (trials without anomaly maps rank last).</summary>
    PixelAuroc = 2,

    /// <summary><see cref="ImageAnomalyMetrics.PixelF1Max"/> (trials without anomaly maps rank last).</summary>
    PixelF1Max = 3,

    /// <summary><see cref="ImageAnomalyMetrics.Aupro"/> (trials without anomaly maps rank last).</summary>
    Aupro = 4,
}

/// <summary>
/// Options of <see cref="ImageDetectorSweep"/>: the backbone, the search space, how trials are picked and budgeted,
/// the metric, the synthetic validation split and where the results go.
/// </summary>
public sealed class ImageDetectorSweepOptions
{
    /// <summary>
    /// The backbone every trial shares, for example <see cref="ImageNetBackbones.ResNet18"/>; when neither this nor
    /// <see cref="BackbonePath"/> is set, the ImageNet ResNet-18 (the detectors' default).
    /// </summary>
    public BackboneModel? Backbone { get; set; }

    /// <summary>Path of the backbone's ONNX file every trial shares, instead of <see cref="Backbone"/>.</summary>
    public string? BackbonePath { get; set; }

    /// <summary>Image column of the training (and validation) data: MLImage or text paths; the synthetic split needs paths. Default "Image".</summary>
    public string InputColumnName { get; set; } = ImageAnomalyDetectorOptions.DefaultInputColumnName;

    /// <summary>Boolean label column of a labelled validation set (true = anomalous). Default "Label".</summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>Mask path column of a labelled validation set ("" for good images), or null for image metrics only. Default "MaskPath".</summary>
    public string? MaskPathColumnName { get; set; } = "MaskPath";

    /// <summary>Input sizes (height = width) to try. Default 256.</summary>
    public SearchParameter<int> ImageSize { get; set; } = BackboneDetectorOptions.DefaultImageSize;

    /// <summary>The detectors and their settings to search. Default: CFA, DFM and CFlow, each at its defaults.</summary>
    public IList<DetectorSearchSpace> SearchSpace { get; set; } = [new CfaSearchSpace(), new DfmSearchSpace(), new CflowSearchSpace()];

    /// <summary>Grid or seeded random search. Default <see cref="SweepStrategy.Random"/>.</summary>
    public SweepStrategy Strategy { get; set; } = SweepStrategy.Random;

    /// <summary>Most configurations to try (successive halving's full-epoch reruns come on top). Default 20.</summary>
    public int MaxTrials { get; set; } = 20;

    /// <summary>
    /// Wall-clock budget: no trial starts after it is spent (a trial in progress finishes). Null for none.
    /// </summary>
    public TimeSpan? TimeBudget { get; set; }

    /// <summary>
    /// Successive halving for the epoch-trained detectors (CFA, CFlow) when 2 or more: each such configuration first trains
    /// with 1/rate of its epochs (rounded up); once a size's trials ran, the best 1/rate of them (rounded up) train again
    /// with all their epochs, as extra trials. 0 (the default) trains every configuration with all its epochs once.
    /// </summary>
    public int SuccessiveHalvingRate { get; set; }

    /// <summary>The validation metric to maximise. Default <see cref="SweepMetric.ImageAuroc"/>.</summary>
    public SweepMetric Metric { get; set; } = SweepMetric.ImageAuroc;

    /// <summary>Seed of random search, of the synthetic split and of every trial's training; null takes the MLContext's seed (0 when it has none).</summary>
    public int? Seed { get; set; }

    /// <summary>
    /// Share of the training images held out for the synthetic validation split when no validation set is given
    /// (at least 2 images are held out and 2 kept). Default 0.2.
    /// </summary>
    public float HoldOutFraction { get; set; } = 0.2f;

    /// <summary>How the synthetic defects of the validation split are made.</summary>
    public SyntheticAnomalyOptions SyntheticAnomalies { get; set; } = new();

    /// <summary>Where TorchSharp training and the backbone run. Default: CUDA when present.</summary>
    public ComputeDevice Device { get; set; } = ComputeDevice.Auto;

    /// <summary>Images per batch for feature extraction and training. Default 32; 1 to <see cref="BackboneDetectorOptions.MaxBatchSize"/>.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Threads ONNX Runtime uses inside one backbone run; 0 lets it choose.</summary>
    public int BackboneThreads { get; set; }

    /// <summary>
    /// Folder for <c>sweep.json</c>, <c>sweep.html</c>, <c>sweep-metric.png</c>, <c>overlays/</c> and <c>best-model.zip</c>;
    /// null writes nothing. Files are written only when the sweep completes, each through a temporary file and a rename;
    /// the folder is created and checked to be writable before the first trial (an <see cref="IOException"/> naming it otherwise).
    /// </summary>
    public string? OutputFolder { get; set; }

    /// <summary>Validation images of the best trial drawn as overlays in the HTML page. Default 8.</summary>
    public int OverlayCount { get; set; } = 8;

    /// <summary>
    /// Keep every trial's fitted model in <see cref="SweepTrialResult.Model"/> (e.g. to evaluate each on a test set);
    /// by default only the best trial's model is kept and the others are released as soon as they are scored.
    /// </summary>
    public bool KeepAllModels { get; set; }

    /// <summary>Receives progress: features, each trial's start, training and result.</summary>
    public IProgress<SweepProgress>? Progress { get; set; }

    /// <summary>Cancels the sweep: checked between batches, training steps and trials; nothing is written to the output folder.</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>
    /// Largest image or mask, in pixels, the sweep reads (see <see cref="ImageAnomalyDetectorOptions.MaxImagePixels"/>); every
    /// trial's model keeps it. Default <see cref="ImageAnomalyDetectorOptions.DefaultMaxImagePixels"/>.
    /// </summary>
    public long MaxImagePixels { get; set; } = ImageAnomalyDetectorOptions.DefaultMaxImagePixels;

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming <paramref name="paramName"/>.</summary>
    internal void Validate(string paramName)
    {
        if (Backbone is not null && BackbonePath is not null)
            throw new ArgumentException($"Set {nameof(Backbone)} or {nameof(BackbonePath)}, not both.", paramName);
        if (BackbonePath is not null && string.IsNullOrWhiteSpace(BackbonePath))
            throw new ArgumentException($"{nameof(BackbonePath)} must name the backbone's ONNX file, or be null.", paramName);
        if (string.IsNullOrWhiteSpace(InputColumnName))
            throw new ArgumentException($"{nameof(InputColumnName)} must be a non-empty column name.", paramName);
        if (string.IsNullOrWhiteSpace(LabelColumnName))
            throw new ArgumentException($"{nameof(LabelColumnName)} must be a non-empty column name.", paramName);
        if (ImageSize is null || ImageSize.GridValues.Any(s => s < 32 || s > BackboneDetectorOptions.MaxImageSize))
            throw new ArgumentException($"{nameof(ImageSize)} must be set, with sizes of 32 to {BackboneDetectorOptions.MaxImageSize} pixels ({ImageSize}).", paramName);
        if (SearchSpace is null || SearchSpace.Count == 0 || SearchSpace.Any(s => s is null))
            throw new ArgumentException($"{nameof(SearchSpace)} must hold at least one detector's search space.", paramName);
        if (!Enum.IsDefined(Strategy))
            throw new ArgumentException($"{nameof(Strategy)} {Strategy} is not defined.", paramName);
        if (!Enum.IsDefined(Metric))
            throw new ArgumentException($"{nameof(Metric)} {Metric} is not defined.", paramName);
        if (MaxTrials < 1)
            throw new ArgumentException($"{nameof(MaxTrials)} must be at least 1, not {MaxTrials}.", paramName);
        if (SuccessiveHalvingRate is < 0 or 1)
            throw new ArgumentException($"{nameof(SuccessiveHalvingRate)} must be 0 (off) or at least 2, not {SuccessiveHalvingRate}.", paramName);
        if (TimeBudget is TimeSpan budget && budget <= TimeSpan.Zero)
            throw new ArgumentException($"{nameof(TimeBudget)} must be positive, not {budget}.", paramName);
        if (!(HoldOutFraction > 0 && HoldOutFraction < 1))
            throw new ArgumentException($"{nameof(HoldOutFraction)} must be between 0 and 1 (exclusive), not {HoldOutFraction}.", paramName);
        if (SyntheticAnomalies is null)
            throw new ArgumentException($"{nameof(SyntheticAnomalies)} must be set.", paramName);
        SyntheticAnomalies.Validate(paramName);
        int largest = ImageSize.GridValues.Max();
        BackboneDetectorOptions.CheckBatchSize(BatchSize, nameof(BatchSize), largest, largest, paramName);
        if (BackboneThreads < 0)
            throw new ArgumentException($"{nameof(BackboneThreads)} must be 0 (automatic) or positive, not {BackboneThreads}.", paramName);
        if (OverlayCount < 0)
            throw new ArgumentException($"{nameof(OverlayCount)} must be 0 or more, not {OverlayCount}.", paramName);
        if (!Enum.IsDefined(Device))
            throw new ArgumentException($"{nameof(Device)} {Device} is not a defined {nameof(ComputeDevice)}.", paramName);
        ImageAnomalyDetectorOptions.ValidateMaxImagePixels(MaxImagePixels, nameof(MaxImagePixels), paramName);
    }
}

/// <summary>A sweep's progress report.</summary>
/// <param name="Stage">"features" (backbone features of a size group), "trial" (a trial starts), "training" (a trial's training step) or "result" (a trial ended).</param>
/// <param name="Trial">The trial's number (1-based), or 0 outside trials.</param>
/// <param name="Trials">Trials planned.</param>
/// <param name="Message">What happens, in words.</param>
/// <param name="Result">The finished trial, for "result".</param>
public sealed record SweepProgress(string Stage, int Trial, int Trials, string Message, SweepTrialResult? Result = null);
