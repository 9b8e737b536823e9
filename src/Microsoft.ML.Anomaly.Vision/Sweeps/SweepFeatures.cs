using System.Diagnostics;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision.Sweeps;

/// <summary>
/// The backbone features of one input size, shared by every trial of that size: the training and validation images
/// run through the backbone once, for the union of the layers the trials read; each trial reads its own layers
/// through <see cref="Select"/>. Validation masks are loaded once at this size too.
/// </summary>
internal sealed class SweepFeatures : IDisposable
{
    private readonly string[] _layers;

    private SweepFeatures(int size, string[] layers, FeatureStore train, FeatureStore validation, bool[][]? masks, double trainSeconds, double validationSeconds)
    {
        Size = size;
        _layers = layers;
        Train = train;
        Validation = validation;
        Masks = masks;
        TrainSeconds = trainSeconds;
        ValidationSeconds = validationSeconds;
    }

    public int Size { get; }

    /// <summary>The layers extracted, in order.</summary>
    public IReadOnlyList<string> Layers => _layers;

    public FeatureStore Train { get; }

    public FeatureStore Validation { get; }

    /// <summary>Validation masks at <see cref="Size"/> (empty for a good image), or null without masks.</summary>
    public bool[][]? Masks { get; }

    /// <summary>Seconds spent extracting the training features (what each standalone Fit would spend again).</summary>
    public double TrainSeconds { get; }

    /// <summary>Seconds spent extracting the validation features.</summary>
    public double ValidationSeconds { get; }

    public static SweepFeatures Extract(IChannel channel, byte[] backboneBytes, string[] layers, int size, SweepValidationSet data,
        ImageDetectorSweepOptions options, IProgress<TrainingProgress>? progress)
    {
        using OnnxBackbone backbone = OnnxBackbone.FromBytes(backboneBytes, layers, options.BackboneThreads, preferCuda: options.Device != ComputeDevice.Cpu);
        channel.Info($"Backbone: {backbone.Description}; runs on ONNX Runtime's {backbone.ExecutionProvider} execution provider.");
        if (backbone.IsUntrained)
            channel.Warning($"The backbone ({backbone.Description.Source}) has UNTRAINED random weights; every trial's quality will be far below a pretrained backbone's.");
        FeatureStore? train = null, validation = null;
        try
        {
            var clock = Stopwatch.StartNew();
            train = BackboneFeatureExtraction.Extract(channel, data.Train, data.TrainColumn, size, size, options.BatchSize, options.MaxImagePixels, backbone,
                FeatureStorePrecision.Float32, BackboneFeatureExtraction.DefaultMemoryLimitBytes, progress, options.CancellationToken);
            double trainSeconds = clock.Elapsed.TotalSeconds;
            clock.Restart();
            validation = BackboneFeatureExtraction.Extract(channel, data.Validation, data.ValidationColumn, size, size, options.BatchSize, options.MaxImagePixels, backbone,
                FeatureStorePrecision.Float32, BackboneFeatureExtraction.DefaultMemoryLimitBytes, progress, options.CancellationToken);
            if (validation.Count != data.Count)
                throw new InvalidOperationException($"The validation data gave {validation.Count} images but {data.Count} labels.");
            bool[][]? masks = data.MaskPaths?.Select((path, i) => path.Length == 0 ? [] : Evaluation.ImagePixels.LoadRowMask(path, size, size,
                options.MaxImagePixels, data.Labels[i], data.ImagePaths[i], $"Validation row {i}")).ToArray();
            double validationSeconds = clock.Elapsed.TotalSeconds;
            return new SweepFeatures(size, layers, train, validation, masks, trainSeconds, validationSeconds);
        }
        catch
        {
            train?.Dispose();
            validation?.Dispose();
            throw;
        }
    }

    /// <summary>A view of <paramref name="source"/> (<see cref="Train"/> or <see cref="Validation"/>) with only <paramref name="layers"/>, in their order.</summary>
    public IFeatureSource Select(FeatureStore source, IReadOnlyList<string> layers) =>
        new LayerSelection(source, layers.Select(l => Array.IndexOf(_layers, l)).ToArray());

    public void Dispose()
    {
        Train.Dispose();
        Validation.Dispose();
    }

    private sealed class LayerSelection : IFeatureSource
    {
        private readonly FeatureStore _source;
        private readonly int[] _layers;

        public LayerSelection(FeatureStore source, int[] layers)
        {
            if (layers.Any(l => l < 0))
                throw new InvalidOperationException("A trial reads a layer that was not extracted.");
            _source = source;
            _layers = layers;
            Layers = layers.Select(l => source.Layers[l]).ToArray();
        }

        public int Count => _source.Count;

        public IReadOnlyList<LayerShape> Layers { get; }

        public void Read(int image, int layer, Span<float> destination) => _source.Read(image, _layers[layer], destination);
    }
}
