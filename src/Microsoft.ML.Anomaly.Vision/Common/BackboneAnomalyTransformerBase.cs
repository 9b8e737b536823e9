using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Base of the detectors that stand on a frozen ONNX backbone: runs the backbone on each batch of images
/// and hands the layer maps to the detector; saves and loads the backbone with the model.
/// </summary>
public abstract partial class BackboneAnomalyTransformerBase : ImageAnomalyTransformerBase, IDisposable
{
    // Name of the model stream holding the backbone's ONNX bytes.
    private const string BackboneStreamName = "Backbone.onnx";

    // The first format whose fields record the backbone stream's byte count.
    private const uint RecordedBackboneLengthVersion = 0x00010003;

    private readonly int _height;
    private readonly int _width;
    // The frozen backbone, shared with copies, cursors and prediction engines (see Dispose).
    private readonly SharedBackbone _backbone;

    private protected BackboneAnomalyTransformerBase(IHostEnvironment env, string registrationName, BackboneDetectorOptions options, OnnxBackbone backbone)
        : base(env, registrationName, options)
    {
        _backbone = new SharedBackbone(backbone);
        _height = options.ImageHeight;
        _width = options.ImageWidth;
        BackboneThreads = options.BackboneThreads;
    }

    private protected BackboneAnomalyTransformerBase(IHostEnvironment env, string registrationName, ModelLoadContext ctx, VersionInfo versionInfo)
        : base(env, registrationName, ctx, versionInfo, out ModelFieldReader fields)
    {
        // *** Binary format *** (the detector's fields after the common header, then its streams; see WriteDetectorFields)
        // int: image height (32 or more)
        // int: image width (32 or more)
        // int: backbone intra-op threads (0 = automatic)
        // int: layer count L (1 or more)
        // L × name: each layer name
        // long: byte count of the backbone's ONNX bytes (1 or more; since 1.3), checked against the stream before it is read
        // stream Backbone.onnx: the backbone's ONNX bytes (ModelStreams.SaveBytes)
        // then the algorithm's streams (SaveAlgorithm)
        string[] layers;
        long? backboneLength = null;
        try
        {
            BinaryReader reader = fields.Reader;
            _height = reader.ReadInt32();
            _width = reader.ReadInt32();
            if (_height < 32 || _width < 32)
                throw new FormatException($"the image size {_height}×{_width} is below 32×32");
            BackboneThreads = reader.ReadInt32();
            if (BackboneThreads < 0)
                throw new FormatException($"the backbone thread count {BackboneThreads} is negative");
            int layerCount = reader.ReadInt32();
            if (layerCount < 1 || layerCount > 64)
                throw new FormatException($"the layer count {layerCount} is outside 1 to 64");
            layers = new string[layerCount];
            for (int i = 0; i < layerCount; i++)
                layers[i] = fields.ReadString();
            if (ctx.Header.ModelVerWritten >= RecordedBackboneLengthVersion)
            {
                backboneLength = reader.ReadInt64();
                if (backboneLength < 1 || backboneLength > Array.MaxLength)
                    throw new FormatException($"the backbone's byte count {backboneLength} is outside 1 to {Array.MaxLength}");
            }
            fields.EnsureConsumed();
        }
        catch (Exception ex) when (ex is EndOfStreamException or InvalidDataException or (FormatException and not DamagedModelStreamException))
        {
            throw new FormatException($"The {registrationName} model is invalid: {ex.Message}", ex);
        }
        byte[] onnx = ModelStreams.LoadBytes(ctx, BackboneStreamName, backboneLength);
        try
        {
            _backbone = new SharedBackbone(OnnxBackbone.FromBytes(onnx, layers, BackboneThreads));
        }
        catch (ArgumentException ex)
        {
            throw new FormatException($"Model stream '{BackboneStreamName}' of the {registrationName} model holds no usable backbone: {ex.Message}", ex);
        }
    }

    /// <summary>The frozen backbone, for its metadata (its session may be closed: runs hold a <see cref="SharedBackbone.Lease"/>).</summary>
    private protected OnnxBackbone Backbone => _backbone.Info;

    /// <summary>Threads ONNX Runtime uses inside one backbone run (0 = automatic).</summary>
    public int BackboneThreads { get; }

    /// <summary>Which backbone the detector stands on: name, source, and whether it is pretrained.</summary>
    public BackboneDescription BackboneDescription => Backbone.Description;

    /// <summary>The backbone layers the detector reads, in order.</summary>
    public IReadOnlyList<string> BackboneLayers => Backbone.Layers;

    /// <inheritdoc />
    public sealed override int InputHeight => _height;

    /// <inheritdoc />
    public sealed override int InputWidth => _width;

    /// <summary>
    /// Closes the backbone's ONNX Runtime session, at once or, while images are being scored, when they are done. The
    /// transformer stays usable: scoring again opens a new session. ML.NET's <c>PredictionEngine</c> disposes the
    /// transformer it was made from when the engine is disposed, so engines on several threads (or in a pool) may be
    /// disposed while others, <c>Transform</c> and copies made by <see cref="ImageAnomalyTransformerBase.WithThreshold(float)"/>
    /// still score: each keeps working. The rest of the fitted state is managed memory (CFlow's flows are LibTorch tensors,
    /// released with the transformer by the garbage collector). To keep the session open across short-lived engines,
    /// create them with <c>new PredictionEngineOptions { OwnsTransformer = false }</c>.
    /// </summary>
    public void Dispose()
    {
        _backbone.Unload();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// Frees the native state of a transformer that nothing else holds (a sweep's trial that is dropped): closes the
    /// backbone's session and releases the algorithm's own native state. The transformer cannot score afterwards.
    /// </summary>
    internal void Release()
    {
        _backbone.Unload();
        DisposeAlgorithm();
    }

    private protected sealed override void ScoreBatch(ReadOnlySpan<float> images, int batch, Span<float> scores, Span<float> maps)
    {
        float[][] layerMaps;
        using (SharedBackbone.Lease lease = _backbone.Acquire())
            layerMaps = lease.Backbone.Run(images, batch, _height, _width);
        ScoreFeatures(layerMaps, batch, scores, maps);
    }

    /// <summary>Scores a batch from backbone layer maps computed elsewhere (a sweep shares them across trials).</summary>
    internal void ScoreLayerMaps(float[][] layerMaps, int batch, Span<float> scores, Span<float> maps) =>
        ScoreFeatures(layerMaps, batch, scores, maps);

    /// <summary>
    /// Checks, when loading, that the algorithm's model was fitted on the layer shapes the saved backbone gives at
    /// the saved input size.
    /// </summary>
    private protected void CheckFittedLayerShapes(IReadOnlyList<LayerShape> fitted, string algorithm)
    {
        IReadOnlyList<LayerShape> shapes;
        using (SharedBackbone.Lease lease = _backbone.Acquire())
            shapes = lease.Backbone.GetLayerShapes(InputHeight, InputWidth);
        if (!shapes.SequenceEqual(fitted))
            throw new FormatException(
                $"The {algorithm} model was fitted on layer shapes {string.Join(", ", fitted)} but its backbone gives {string.Join(", ", shapes)}.");
    }

    /// <summary>Scores a batch from its backbone layer maps (layerMaps[l] holds batch × C × h × w).</summary>
    private protected abstract void ScoreFeatures(float[][] layerMaps, int batch, Span<float> scores, Span<float> maps);

    private protected sealed override void WriteDetectorFields(BinaryWriter writer)
    {
        // *** Binary format *** (see the loading constructor)
        writer.Write(_height);
        writer.Write(_width);
        writer.Write(BackboneThreads);
        writer.Write(Backbone.Layers.Count);
        foreach (string layer in Backbone.Layers)
            ModelFieldReader.WriteStringOrNull(writer, layer);
        writer.Write((long)Backbone.ModelBytes.Length);
    }

    private protected sealed override void SaveDetectorStreams(ModelSaveContext ctx)
    {
        // *** Binary format *** (see the loading constructor)
        ModelStreams.SaveBytes(ctx, BackboneStreamName, Backbone.ModelBytes);
        SaveAlgorithm(ctx);
    }

    /// <summary>Writes the algorithm's fitted state (after the backbone).</summary>
    private protected abstract void SaveAlgorithm(ModelSaveContext ctx);

    /// <summary>Releases the algorithm's own native state, if any (see <see cref="Release"/>).</summary>
    private protected virtual void DisposeAlgorithm()
    {
    }

    /// <summary>ML.NET version information for a detector: its 8-character model signature and loader signature.</summary>
    private protected static VersionInfo MakeVersionInfo(string modelSignature, string loaderSignature, Type loaderType) => new(
        modelSignature: modelSignature,
        // 1.1: first version.
        // 1.2: the transformer's fields form one checked block with names inline, and every named stream (backbone
        //      ONNX, algorithm model) is a checked block: a SHA-256 of its bytes is checked before they are used
        //      (ModelStreams). 1.1 models still load, without those checks.
        // 1.3: the fields record the backbone's byte count, checked against Backbone.onnx before it is read.
        verWrittenCur: RecordedBackboneLengthVersion,
        verReadableCur: RecordedBackboneLengthVersion,
        verWeCanReadBack: 0x00010001,
        loaderAssemblyName: loaderType.Assembly.FullName,
        loaderSignature: loaderSignature,
        loaderSignatureAlt: null);
}
