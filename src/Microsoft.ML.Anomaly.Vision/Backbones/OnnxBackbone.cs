using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Anomaly.Vision.Training;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// A convolutional feature extractor stored as an ONNX model and run with ONNX Runtime: it returns the
/// feature maps of chosen intermediate layers for a batch of normalized images.
/// </summary>
/// <remarks>
/// A layer can be named three ways: by a graph output name; by a module name such as <c>layer2</c>,
/// resolved from the module scopes that <c>torch.onnx.export(..., dynamo=False)</c> writes into node
/// names (the output of the last node in that scope); or by any tensor name in the graph. The model is
/// rewritten so that the chosen tensors are its outputs and unused nodes are dropped. ONNX Runtime runs
/// on CUDA when asked for and available (GPU build of ONNX Runtime), else on the CPU.
/// </remarks>
public sealed class OnnxBackbone : IDisposable
{
    private static readonly ConditionalWeakTable<byte[], StrongBox<(string Key, OnnxModelEditor.Prepared Value)>> PreparedCache = new();

    private readonly InferenceSession _session;
    private readonly SessionOptions _sessionOptions;
    private readonly RunOptions _runOptions = new();
    private readonly OnnxModelEditor.Prepared _prepared;
    private readonly string[] _sessionOutputs;
    private readonly int[] _outputIndexOfLayer;
    private readonly ConcurrentDictionary<(int Height, int Width), LayerShape[]> _shapes = new();
    private readonly (int IntraOpThreads, bool PreferCuda, int CudaDeviceId, string Source) _settings;
    private int _disposed;

    private OnnxBackbone(byte[] model, OnnxModelEditor.Prepared prepared, IReadOnlyList<string> layers, int intraOpThreads, bool preferCuda, int cudaDeviceId, string source)
    {
        ModelBytes = model;
        _settings = (intraOpThreads, preferCuda, cudaDeviceId, source);
        _prepared = prepared;
        Layers = layers.ToArray();
        _sessionOutputs = prepared.OutputTensors.Distinct(StringComparer.Ordinal).ToArray();
        _outputIndexOfLayer = prepared.OutputTensors.Select(t => Array.IndexOf(_sessionOutputs, t)).ToArray();

        InferenceSession? session = null;
        SessionOptions? options = null;
        string provider = "CPU";
        if (preferCuda && CudaProviderAvailable())
        {
            try
            {
                options = CreateOptions(intraOpThreads);
                options.AppendExecutionProvider_CUDA(cudaDeviceId);
                session = new InferenceSession(prepared.EditedModel, options);
                provider = "CUDA";
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException or OnnxRuntimeException)
            {
                // The CUDA provider is listed but cannot start (no driver, no device): run on the CPU.
                session?.Dispose();
                options?.Dispose();
                session = null;
                options = null;
            }
        }
        if (session is null)
        {
            options = CreateOptions(intraOpThreads);
            try
            {
                session = new InferenceSession(prepared.EditedModel, options);
            }
            catch (OnnxRuntimeException e)
            {
                options.Dispose();
                throw new ArgumentException($"ONNX Runtime cannot load {source}: {e.Message}", nameof(model), e);
            }
        }
        _session = session;
        _sessionOptions = options!;
        ExecutionProvider = provider;
    }

    /// <summary>Loads a backbone from an ONNX file.</summary>
    /// <param name="onnxPath">Path of the .onnx file (weights inside the file).</param>
    /// <param name="layers">The layers to extract, in the order <see cref="Run"/> returns them.</param>
    /// <param name="intraOpThreads">ONNX Runtime threads per run; 0 lets ONNX Runtime choose.</param>
    /// <param name="preferCuda">Run on CUDA when the CUDA execution provider is available.</param>
    /// <param name="cudaDeviceId">Which CUDA device runs the model when CUDA is used (0 is the first).</param>
    /// <returns>The backbone; dispose it when done.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The path is a directory, the file is not an ONNX model, a layer is not found, or the input is not an image batch.</exception>
    public static OnnxBackbone Load(string onnxPath, IReadOnlyList<string> layers, int intraOpThreads = 0, bool preferCuda = true, int cudaDeviceId = 0)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(onnxPath);
        if (Directory.Exists(onnxPath))
            throw new ArgumentException($"The ONNX backbone path '{onnxPath}' is a directory; give the path of the .onnx file itself.", nameof(onnxPath));
        if (!File.Exists(onnxPath))
            throw new FileNotFoundException($"The ONNX backbone file '{onnxPath}' does not exist.", onnxPath);
        return Create(File.ReadAllBytes(onnxPath), layers, intraOpThreads, preferCuda, cudaDeviceId, $"'{onnxPath}'");
    }

    /// <summary>Creates a backbone from the bytes of an ONNX model.</summary>
    /// <param name="model">The serialized ONNX model; kept, not copied, as <see cref="ModelBytes"/>.</param>
    /// <param name="layers">The layers to extract, in the order <see cref="Run"/> returns them.</param>
    /// <param name="intraOpThreads">ONNX Runtime threads per run; 0 lets ONNX Runtime choose.</param>
    /// <param name="preferCuda">Run on CUDA when the CUDA execution provider is available.</param>
    /// <returns>The backbone; dispose it when done.</returns>
    /// <exception cref="ArgumentException">The bytes are not an ONNX model, a layer is not found, or the input is not an image batch.</exception>
    /// <param name="cudaDeviceId">The CUDA device ONNX Runtime uses when it runs on CUDA.</param>
    public static OnnxBackbone FromBytes(byte[] model, IReadOnlyList<string> layers, int intraOpThreads = 0, bool preferCuda = true, int cudaDeviceId = 0)
        => Create(model, layers, intraOpThreads, preferCuda, cudaDeviceId, "the model bytes");

    private static OnnxBackbone Create(byte[] model, IReadOnlyList<string> layers, int intraOpThreads, bool preferCuda, int cudaDeviceId, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0)
            throw new ArgumentException("At least one layer must be named.", nameof(layers));
        ArgumentOutOfRangeException.ThrowIfNegative(intraOpThreads);
        ArgumentOutOfRangeException.ThrowIfNegative(cudaDeviceId);

        // The edited model is kept with the original bytes, so that backbones made again from the same
        // bytes and layers (for example at training and at scoring) skip the rewrite.
        string key = string.Join("\n", layers);
        var box = PreparedCache.GetValue(model, _ => new StrongBox<(string, OnnxModelEditor.Prepared)>());
        OnnxModelEditor.Prepared? prepared = null;
        lock (box)
        {
            if (box.Value.Key == key && box.Value.Value is not null)
                prepared = box.Value.Value;
        }
        if (prepared is null)
        {
            var proto = OnnxModelEditor.Parse(model, source, nameof(model));
            prepared = OnnxModelEditor.Prepare(proto, layers, source);
            lock (box)
                box.Value = (key, prepared);
        }
        return new OnnxBackbone(model, prepared, layers, intraOpThreads, preferCuda, cudaDeviceId, source);
    }

    private static SessionOptions CreateOptions(int intraOpThreads)
    {
        var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        // ONNX Runtime's threads would otherwise spin after each run, taking the cores from the stages that follow it
        // (the descriptor and the distances run on .NET's threads).
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        if (intraOpThreads > 0)
            options.IntraOpNumThreads = intraOpThreads;
        return options;
    }

    private static bool CudaProviderAvailable()
    {
        try
        {
            return OrtEnv.Instance().GetAvailableProviders().Contains("CUDAExecutionProvider");
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException or OnnxRuntimeException)
        {
            return false;
        }
    }

    /// <summary>The original model bytes, as given (what a saved pipeline stores).</summary>
    public byte[] ModelBytes { get; }

    /// <summary>The layer names as requested.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Whether the model's metadata marks its weights as random (<c>anomaly_vision.untrained</c> = <c>true</c>).</summary>
    public bool IsUntrained => !_prepared.Description.IsPretrained;

    /// <summary>The backbone's name and source, from the model's metadata (<see cref="ResNetBackbones"/> and
    /// <see cref="ImageNetBackbones"/> write them), and whether it is pretrained.</summary>
    public BackboneDescription Description => _prepared.Description;

    /// <summary>Where ONNX Runtime runs the model: <c>"CPU"</c> or <c>"CUDA"</c>.</summary>
    public string ExecutionProvider { get; }

    /// <summary>The tensor names the requested layers resolved to, in the order of <see cref="Layers"/>.</summary>
    internal IReadOnlyList<string> LayerTensors => _prepared.OutputTensors;

    /// <summary>The rewritten model that the session runs.</summary>
    internal byte[] EditedModelBytes => _prepared.EditedModel;

    /// <summary>The shapes of the layer maps for one image of the given size (computed once per size).</summary>
    /// <param name="height">Image height in pixels.</param>
    /// <param name="width">Image width in pixels.</param>
    /// <returns>One shape per layer, in the order of <see cref="Layers"/>.</returns>
    public IReadOnlyList<LayerShape> GetLayerShapes(int height, int width)
    {
        CheckSize(height, width);
        return _shapes.GetOrAdd((height, width), size =>
        {
            int batch = _prepared.FixedBatch > 0 ? (int)_prepared.FixedBatch : 1;
            var images = new float[batch * 3 * size.Height * size.Width];
            return RunCore(images, batch, size.Height, size.Width, _runOptions, out _);
        });
    }

    /// <summary>Runs the backbone on a batch of normalized images.</summary>
    /// <param name="images">batch×3×height×width values, NCHW, normalized as the backbone expects.</param>
    /// <param name="batch">Number of images.</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    /// <param name="cancellationToken">Stops a run in progress (ONNX Runtime's terminate flag) when cancelled.</param>
    /// <returns>One array per layer, each batch×C×h×w in NCHW order.</returns>
    /// <remarks>Safe to call from several threads at once.</remarks>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public float[][] Run(ReadOnlySpan<float> images, int batch, int height, int width, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        CheckSize(height, width);
        if (!cancellationToken.CanBeCanceled)
        {
            RunCore(images, batch, height, width, _runOptions, out var maps);
            return maps;
        }

        using var runOptions = new RunOptions();
        using (cancellationToken.Register(() => runOptions.Terminate = true))
        {
            try
            {
                cancellationToken.ThrowIfCancellationRequested();
                RunCore(images, batch, height, width, runOptions, out var maps);
                return maps;
            }
            catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }
        }
    }

    private void CheckSize(int height, int width)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        if ((_prepared.FixedHeight != 0 && _prepared.FixedHeight != height) || (_prepared.FixedWidth != 0 && _prepared.FixedWidth != width))
        {
            string expected = $"{(_prepared.FixedHeight == 0 ? "any" : _prepared.FixedHeight.ToString())}×" +
                              $"{(_prepared.FixedWidth == 0 ? "any" : _prepared.FixedWidth.ToString())}";
            throw new ArgumentException(
                $"The backbone model takes images of size {expected} (height×width) but {height}×{width} was given; " +
                "resize the images to that size or export the model with dynamic height and width.",
                height != _prepared.FixedHeight && _prepared.FixedHeight != 0 ? nameof(height) : nameof(width));
        }
    }

    private LayerShape[] RunCore(ReadOnlySpan<float> images, int batch, int height, int width, RunOptions runOptions, out float[][] maps)
    {
        long perImage = 3L * height * width;
        if (images.Length != batch * perImage)
        {
            throw new ArgumentException(
                $"Expected {batch}×3×{height}×{width} = {batch * perImage} values, got {images.Length}.", nameof(images));
        }
        int chunk = _prepared.FixedBatch > 0 ? (int)_prepared.FixedBatch : batch;
        if (batch % chunk != 0)
        {
            throw new ArgumentException(
                $"The backbone model takes batches of exactly {chunk} images; {batch} is not a multiple of {chunk}.", nameof(batch));
        }

        var shapes = new LayerShape[Layers.Count];
        maps = new float[Layers.Count][];
        var inputNames = new[] { _prepared.InputName };
        for (int start = 0; start < batch; start += chunk)
        {
            using var input = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float,
                new long[] { chunk, 3, height, width });
            images.Slice((int)(start * perImage), (int)(chunk * perImage)).CopyTo(input.GetTensorMutableDataAsSpan<float>());
            using var outputs = _session.Run(runOptions, inputNames, new[] { input }, _sessionOutputs);
            var outputList = outputs.ToArray();
            for (int l = 0; l < Layers.Count; l++)
            {
                var value = outputList[_outputIndexOfLayer[l]];
                long[] shape = value.GetTensorTypeAndShape().Shape;
                if (shape.Length != 4)
                {
                    throw new InvalidOperationException(
                        $"Layer '{Layers[l]}' (tensor '{_prepared.OutputTensors[l]}') has shape [{string.Join(", ", shape)}]; " +
                        "a feature layer must be 4-D N×C×H×W.");
                }
                var layerShape = new LayerShape((int)shape[1], (int)shape[2], (int)shape[3]);
                shapes[l] = layerShape;
                maps[l] ??= new float[(long)batch * layerShape.Size];
                value.GetTensorDataAsSpan<float>().CopyTo(maps[l].AsSpan(start * layerShape.Size, chunk * layerShape.Size));
            }
        }
        return shapes;
    }

    /// <summary>A new backbone on the same model, layers and settings, with a session of its own (this one may be disposed).</summary>
    internal OnnxBackbone Reopen() =>
        new(ModelBytes, _prepared, Layers, _settings.IntraOpThreads, _settings.PreferCuda, _settings.CudaDeviceId, _settings.Source);

    /// <summary>Releases the ONNX Runtime session.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _session.Dispose();
        _sessionOptions.Dispose();
        _runOptions.Dispose();
    }
}
