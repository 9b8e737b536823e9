using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision.Common;

/// <summary>
/// The part of Fit the three detectors share: open the backbone, warn when its weights are untrained, and run
/// every training image through it once, keeping the layer maps for the training epochs.
/// </summary>
internal static class BackboneFeatureExtraction
{
    /// <summary>Bytes of training features kept in memory before the rest spill to a temporary file: 2 GiB.</summary>
    public const long DefaultMemoryLimitBytes = 2L << 30;

    /// <summary>
    /// A detector's whole Fit: open the backbone, check what the layer shapes already decide
    /// (<paramref name="checkLayerShapes"/>), extract the training features once, and hand backbone and features to
    /// <paramref name="fitOnFeatures"/> (train, then wrap in the transformer); the backbone is released if any step fails.
    /// </summary>
    /// <remarks>
    /// The MLContext is honoured as ML.NET's own trainers do: its seed when the options set none, its cancellation
    /// (checked between images, backbone runs and training steps) and its log (progress of every stage).
    /// </remarks>
    public static TTransformer Fit<TTransformer>(IHost host, IDataView input, BackboneDetectorOptions options,
        FeatureStorePrecision precision, long memoryLimitBytes,
        Func<OnnxBackbone, IFeatureSource, FitRun, TTransformer> fitOnFeatures,
        Action<IReadOnlyList<LayerShape>, long?>? checkLayerShapes = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        using IChannel channel = host.Start("Fit");
        using var cancellation = new HostCancellation(host, options.CancellationToken);
        cancellation.ThrowIfCancellationRequested();
        int seed = options.Seed ?? (host as IHostEnvironmentInternal)?.Seed ?? 0;
        channel.Info($"Seed {seed} ({(options.Seed.HasValue ? "the options' Seed" : "the MLContext's seed, or 0 when it has none")}).");
        (ComputeDevice device, int cudaDeviceIndex) = ResolveDevice(channel, host, options);
        OnnxBackbone backbone = OpenBackbone(channel, options, device, cudaDeviceIndex);
        try
        {
            checkLayerShapes?.Invoke(backbone.GetLayerShapes(options.ImageHeight, options.ImageWidth), input.GetRowCount());
            var run = new FitRun(seed, device, cudaDeviceIndex, TrainingProgressSink(channel, options.Progress), cancellation.Token);
            using FeatureStore features = Extract(channel, input, options.InputColumnName, options.ImageHeight, options.ImageWidth,
                options.BatchSize, options.MaxImagePixels, backbone, precision, memoryLimitBytes, options.Progress, cancellation.Token);
            cancellation.ThrowIfCancellationRequested();   // the host's flag itself: the token sees it only at the next poll
            return fitOnFeatures(backbone, features, run);
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The device of training and of the backbone: the options' <see cref="BackboneDetectorOptions.Device"/>, with the
    /// MLContext's GPU settings read as ML.NET's TorchSharp trainers read them. <c>GpuDeviceId</c> asks for that CUDA
    /// device (when the options leave the device on Auto); when CUDA is asked for and cannot be used, <c>FallbackToCpu</c>
    /// chooses between the CPU, with a warning, and an error before any image is read.
    /// </summary>
    private static (ComputeDevice Device, int CudaDeviceIndex) ResolveDevice(IChannel channel, IHost host, BackboneDetectorOptions options)
    {
        var context = host as IHostEnvironmentInternal;
        int? gpuDeviceId = context?.GpuDeviceId;
        if (options.Device == ComputeDevice.Cpu || (options.Device == ComputeDevice.Auto && gpuDeviceId is null))
            return (options.Device, 0);
        if (TorchRuntime.IsCudaAvailable())
            return (ComputeDevice.Cuda, gpuDeviceId ?? 0);
        string asked = gpuDeviceId is int id ? $"MLContext.GpuDeviceId is {id}" : $"{nameof(options.Device)} is {ComputeDevice.Cuda}";
        if (context?.FallbackToCpu != true)
            throw new InvalidOperationException(
                $"{asked}, but no CUDA device can be used (build with -p:AnomalyVisionGpu=true on a machine with an NVIDIA driver); " +
                "set MLContext.FallbackToCpu to true to train on the CPU instead.");
        channel.Warning($"{asked}, but no CUDA device can be used: training and the backbone fall back to the CPU (MLContext.FallbackToCpu).");
        return (ComputeDevice.Cpu, 0);
    }

    /// <summary>Opens the backbone the options name (the ImageNet ResNet-18 by default) and logs which it is and where it runs.</summary>
    private static OnnxBackbone OpenBackbone(IChannel channel, BackboneDetectorOptions options, ComputeDevice device, int cudaDeviceIndex)
    {
        bool preferCuda = device != ComputeDevice.Cpu;
        var backbone = options.BackbonePath is not null
            ? OnnxBackbone.Load(options.BackbonePath, options.BackboneLayers, options.BackboneThreads, preferCuda, cudaDeviceIndex)
            : OnnxBackbone.FromBytes((options.Backbone ?? ImageNetBackbones.ResNet18()).GetOnnxBytes(), options.BackboneLayers,
                options.BackboneThreads, preferCuda, cudaDeviceIndex);
        channel.Info($"Backbone: {backbone.Description}; runs on ONNX Runtime's {backbone.ExecutionProvider} execution provider.");
        if (device == ComputeDevice.Cuda && backbone.ExecutionProvider != "CUDA")
            channel.Warning("CUDA was requested but ONNX Runtime's CUDA execution provider is not available; the backbone runs on the CPU.");
        if (backbone.IsUntrained)
            channel.Warning(
                $"The backbone ({backbone.Description.Source}) has UNTRAINED random weights. Its features are not pretrained ones and " +
                "detection quality will be far below that of an ImageNet-pretrained backbone such as ImageNetBackbones.ResNet18().");
        return backbone;
    }

    /// <summary>Runs every image of <paramref name="input"/> through the backbone once and returns the stored layer maps.</summary>
    internal static FeatureStore Extract(IChannel channel, IDataView input, string inputColumnName, int height, int width, int batchSize,
        long maxImagePixels, OnnxBackbone backbone, FeatureStorePrecision precision, long memoryLimitBytes, IProgress<TrainingProgress>? progress,
        CancellationToken cancellationToken)
    {
        IReadOnlyList<LayerShape> shapes = backbone.GetLayerShapes(height, width);
        BackboneDetectorOptions.CheckLayerBatch(batchSize, shapes, backbone.Layers, height, width);
        var store = new FeatureStore(shapes, precision, memoryLimitBytes);
        try
        {
            long? rows = input.GetRowCount();
            int total = rows is long n and <= int.MaxValue ? (int)n : 0;
            foreach (var (images, count) in TrainingImageReader.ReadBatches(input, inputColumnName, height, width, batchSize, maxImagePixels, cancellationToken))
            {
                cancellationToken.ThrowIfCancellationRequested();
                float[][] maps = backbone.Run(images.AsSpan(0, count * 3 * height * width), count, height, width, cancellationToken);
                for (int image = 0; image < count; image++)
                {
                    var perLayer = new float[shapes.Count][];
                    for (int layer = 0; layer < shapes.Count; layer++)
                    {
                        int size = shapes[layer].Size;
                        perLayer[layer] = maps[layer].AsSpan(image * size, size).ToArray();
                        if (!System.Numerics.Tensors.TensorPrimitives.IsFiniteAll<float>(perLayer[layer]))
                            throw new ArgumentException(
                                $"The backbone produced NaN or infinite features for training image {store.Count + 1} (layer {backbone.Layers[layer]}); check the image and the backbone.",
                                nameof(input));
                    }
                    store.Add(perLayer);
                }
                Report(channel, progress, new TrainingProgress("features", store.Count, Math.Max(total, store.Count), double.NaN));
            }
            channel.Info($"Extracted backbone features of {store.Count} training images ({store.MemoryBytes / (1 << 20)} MiB in memory, {store.SpilledCount} spilled to disk).");
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>A progress sink that forwards to the user's callback and to ML.NET's log.</summary>
    internal static IProgress<TrainingProgress> TrainingProgressSink(IChannel channel, IProgress<TrainingProgress>? user) =>
        new ForwardingProgress(report => Report(channel, user, report));

    private static void Report(IChannel channel, IProgress<TrainingProgress>? user, TrainingProgress report)
    {
        channel.Info(double.IsNaN(report.Loss)
            ? $"{report.Stage}: {report.Step}/{report.Steps}"
            : $"{report.Stage}: epoch {report.Step}/{report.Steps}, loss {report.Loss:G6}");
        user?.Report(report);
    }

    internal sealed class ForwardingProgress(Action<TrainingProgress> forward) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => forward(value);
    }
}

/// <summary>What a detector's training step gets from Fit: the seed, the device, the progress sink (user and log) and the cancellation token.</summary>
internal sealed record FitRun(int Seed, ComputeDevice Device, int CudaDeviceIndex, IProgress<TrainingProgress> Progress, CancellationToken CancellationToken);
