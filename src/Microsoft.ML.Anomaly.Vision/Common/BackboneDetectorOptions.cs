using Anomaly.Vision.Training;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Options shared by the detectors that stand on a frozen ONNX backbone (CFA, CFlow, DFM): which backbone,
/// the input size, where training runs, and how Fit reports progress.
/// </summary>
public abstract class BackboneDetectorOptions : ImageAnomalyDetectorOptions
{
    /// <summary>Default input height and width, as anomalib's detectors use.</summary>
    public const int DefaultImageSize = 256;

    /// <summary>Largest <see cref="ImageHeight"/> and <see cref="ImageWidth"/> accepted: 4096 pixels.</summary>
    public const int MaxImageSize = 4096;

    /// <summary>Largest <see cref="BatchSize"/> accepted: 4096 images.</summary>
    public const int MaxBatchSize = 4096;

    /// <summary>Creates options with the defaults.</summary>
    protected BackboneDetectorOptions()
    {
    }

    /// <summary>
    /// The backbone, for example <see cref="ImageNetBackbones.ResNet18"/> or <see cref="ResNetBackbones.FromTorchvisionCheckpoint"/>.
    /// When neither this nor <see cref="BackbonePath"/> is set, the detectors use <see cref="ImageNetBackbones.ResNet18"/>
    /// (the ImageNet ResNet-18 of the NuGet package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c>, which this library
    /// references). The model's bytes are stored in the saved model.
    /// </summary>
    public BackboneModel? Backbone { get; set; }

    /// <summary>
    /// Path of the backbone's ONNX file (for example a torchvision ResNet exported with <c>torch.onnx.export</c>,
    /// or one written by <see cref="ResNetBackbones"/>), instead of <see cref="Backbone"/>. The model's bytes are
    /// stored in the saved model.
    /// </summary>
    public string? BackbonePath { get; set; }

    /// <summary>Height in pixels images are resized to; also the anomaly map's height. Default 256; 32 to <see cref="MaxImageSize"/>.</summary>
    public int ImageHeight { get; set; } = DefaultImageSize;

    /// <summary>Width in pixels images are resized to; also the anomaly map's width. Default 256; 32 to <see cref="MaxImageSize"/>.</summary>
    public int ImageWidth { get; set; } = DefaultImageSize;

    /// <summary>
    /// Where TorchSharp training and inference run, and whether the backbone may use CUDA. Default: CUDA when present, else
    /// the CPU; the MLContext's <c>GpuDeviceId</c> and <c>FallbackToCpu</c> choose the CUDA device and what happens without one.
    /// </summary>
    public ComputeDevice Device { get; set; } = ComputeDevice.Auto;

    /// <summary>
    /// Images per training batch (and per backbone batch during feature extraction). Default 32, as anomalib's data loaders;
    /// 1 to <see cref="MaxBatchSize"/>, and a batch of images and each batch of layer maps must fit in one array.
    /// </summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>
    /// Seed of weight initialisation and shuffling; a fixed seed gives the same model on the CPU. <see langword="null"/>
    /// (the default) takes the MLContext's seed (<c>new MLContext(seed: 0)</c>), or 0 when the context has none.
    /// </summary>
    public int? Seed { get; set; }

    /// <summary>Threads ONNX Runtime uses inside one backbone run; 0 lets it choose.</summary>
    public int BackboneThreads { get; set; }

    /// <summary>Receives progress reports during Fit (feature extraction, then training); every report is also written to the MLContext's log.</summary>
    public IProgress<TrainingProgress>? Progress { get; set; }

    /// <summary>
    /// Cancels Fit, as ML.NET's own cancellation of the MLContext does; both are checked between images, backbone runs
    /// and training steps.
    /// </summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>The backbone layers the detector reads, in order.</summary>
    internal abstract IReadOnlyList<string> BackboneLayers { get; }

    /// <summary>Checks all options of a detector; throws <see cref="ArgumentException"/> naming <paramref name="paramName"/>.</summary>
    internal abstract void ValidateAll(string paramName);

    /// <summary>Returns <paramref name="options"/> after checking it, for an estimator's constructor.</summary>
    internal static TOptions Checked<TOptions>(TOptions options)
        where TOptions : BackboneDetectorOptions
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ValidateAll(nameof(options));
        return options;
    }

    /// <summary>
    /// Checks a batch size (named <paramref name="option"/>): 1 to <see cref="MaxBatchSize"/>, and a batch of images of
    /// <paramref name="height"/>×<paramref name="width"/> (3 float channels) fits in one array.
    /// </summary>
    internal static void CheckBatchSize(int batchSize, string option, int height, int width, string paramName)
    {
        if (batchSize < 1 || batchSize > MaxBatchSize)
            throw new ArgumentException($"{option} must be between 1 and {MaxBatchSize}, not {batchSize}.", paramName);
        long values = (long)batchSize * 3 * height * width;
        if (values > Array.MaxLength)
            throw new ArgumentException(
                $"{option} {batchSize} at {height}×{width} pixels makes batches of {values} values, more than one array holds ({Array.MaxLength}); lower {option} or the image size.",
                paramName);
    }

    /// <summary>
    /// Checks, once the backbone's layer shapes are known, that <paramref name="batchSize"/> images' maps of each layer
    /// fit in one array; throws <see cref="ArgumentException"/> naming <see cref="BatchSize"/>.
    /// </summary>
    internal static void CheckLayerBatch(int batchSize, IReadOnlyList<LayerShape> shapes, IReadOnlyList<string> layers, int height, int width)
    {
        for (int l = 0; l < shapes.Count; l++)
        {
            long values = (long)batchSize * shapes[l].Size;
            if (values > Array.MaxLength)
                throw new ArgumentException(
                    $"{nameof(BatchSize)} {batchSize} at {height}×{width} pixels makes batches of layer '{layers[l]}' ({shapes[l]}) of {values} values, " +
                    $"more than one array holds ({Array.MaxLength}); lower {nameof(BatchSize)} or the image size.", "options");
        }
    }

    /// <summary>Checks the shared options; throws <see cref="ArgumentException"/> naming <paramref name="paramName"/>.</summary>
    internal void ValidateBackboneOptions(string paramName)
    {
        Validate(paramName);
        if (Backbone is not null && BackbonePath is not null)
            throw new ArgumentException($"Set {nameof(Backbone)} or {nameof(BackbonePath)}, not both.", paramName);
        if (BackbonePath is not null && string.IsNullOrWhiteSpace(BackbonePath))
            throw new ArgumentException($"{nameof(BackbonePath)} must name the backbone's ONNX file, or be null.", paramName);
        if (ImageHeight < 32 || ImageWidth < 32)
            throw new ArgumentException($"{nameof(ImageHeight)} and {nameof(ImageWidth)} must be at least 32 pixels, not {ImageHeight}×{ImageWidth}.", paramName);
        if (ImageHeight > MaxImageSize || ImageWidth > MaxImageSize)
            throw new ArgumentException($"{nameof(ImageHeight)} and {nameof(ImageWidth)} must be at most {MaxImageSize} pixels, not {ImageHeight}×{ImageWidth}.", paramName);
        if (!Enum.IsDefined(Device))
            throw new ArgumentException($"{nameof(Device)} {Device} is not a defined {nameof(ComputeDevice)}.", paramName);
        CheckBatchSize(BatchSize, nameof(BatchSize), ImageHeight, ImageWidth, paramName);
        CheckBatchSize(ScoringBatchSize, nameof(ScoringBatchSize), ImageHeight, ImageWidth, paramName);
        if (BackboneThreads < 0)
            throw new ArgumentException($"{nameof(BackboneThreads)} must be 0 (automatic) or positive, not {BackboneThreads}.", paramName);
        var layers = BackboneLayers;
        if (layers.Count == 0 || layers.Any(string.IsNullOrWhiteSpace))
            throw new ArgumentException("At least one backbone layer is needed, and layer names must not be empty.", paramName);
        if (layers.Distinct(StringComparer.Ordinal).Count() != layers.Count)
            throw new ArgumentException($"The backbone layers must differ from each other ({string.Join(", ", layers)}).", paramName);
    }
}
