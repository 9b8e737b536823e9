using System.Collections.Concurrent;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Anomaly.Vision.Tests.Persistence;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(ToyTransformer), null, typeof(SignatureLoadModel), "Toy Image Anomaly", ToyTransformer.LoaderSignature)]
[assembly: LoadableClass(typeof(OtherToyTransformer), null, typeof(SignatureLoadModel), "Other Toy Image Anomaly", OtherToyTransformer.LoaderSignature)]

namespace Microsoft.ML.Anomaly.Vision.Tests.Persistence;

/// <summary>Options of the toy detectors.</summary>
internal sealed class ToyOptions : ImageAnomalyDetectorOptions
{
    public int Size { get; set; } = 4;
}

/// <summary>
/// Toy detector: fitting learns the mean normalized pixel value m of the training images; an image's map
/// at (y, x) is the mean over channels of |v - m|, its score the mean of the map.
/// </summary>
internal abstract class ToyTransformerBase : ImageAnomalyTransformerBase
{
    private readonly int _size;
    private readonly byte[] _blob;

    private protected ToyTransformerBase(IHostEnvironment env, string name, ToyOptions options, float mean)
        : base(env, name, options)
    {
        _size = options.Size;
        Mean = mean;
        _blob = [1, 2, 3, (byte)_size];
    }

    private protected ToyTransformerBase(IHostEnvironment env, string name, ModelLoadContext ctx, VersionInfo versionInfo)
        : base(env, name, ctx, versionInfo, out ModelFieldReader fields)
    {
        // *** Binary format ***
        // fields: int size; float mean; stream ToyBlob: bytes; stream ToyStats: int size
        _size = fields.Reader.ReadInt32();
        Mean = fields.Reader.ReadSingle();
        fields.EnsureConsumed();
        _blob = ModelStreams.LoadBytes(ctx, "ToyBlob");
        int size = ModelStreams.LoadBinary(ctx, "ToyStats", r => r.ReadInt32());
        if (size != _size || _blob.Length != 4 || _blob[3] != _size)
            throw new InvalidDataException("toy payload mismatch");
    }

    public float Mean { get; }

    /// <summary>The batch sizes ScoreBatch was called with.</summary>
    public ConcurrentQueue<int> Batches { get; } = new();

    public override int InputHeight => _size;

    public override int InputWidth => _size;

    private protected override void ScoreBatch(ReadOnlySpan<float> images, int batch, Span<float> scores, Span<float> maps)
    {
        Batches.Enqueue(batch);
        int plane = _size * _size;
        for (int b = 0; b < batch; b++)
        {
            ReadOnlySpan<float> image = images.Slice(b * 3 * plane, 3 * plane);
            float total = 0;
            for (int p = 0; p < plane; p++)
            {
                float v = (MathF.Abs(image[p] - Mean) + MathF.Abs(image[plane + p] - Mean) + MathF.Abs(image[2 * plane + p] - Mean)) / 3f;
                if (ProducesMap)
                    maps[b * plane + p] = v;
                total += v;
            }
            scores[b] = total / plane;
        }
    }

    private protected override void WriteDetectorFields(BinaryWriter writer)
    {
        writer.Write(_size);
        writer.Write(Mean);
    }

    private protected override void SaveDetectorStreams(ModelSaveContext ctx)
    {
        ModelStreams.SaveBytes(ctx, "ToyBlob", _blob);
        ModelStreams.SaveBinary(ctx, "ToyStats", w => w.Write(_size));
    }
}

/// <summary>The toy detector with anomaly maps.</summary>
internal sealed class ToyTransformer : ToyTransformerBase
{
    internal const string LoaderSignature = "AnomalyToyTransform";

    internal ToyTransformer(IHostEnvironment env, ToyOptions options, float mean)
        : base(env, nameof(ToyTransformer), options, mean)
    {
    }

    private ToyTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : base(env, nameof(ToyTransformer), ctx, GetVersionInfo())
    {
    }

    public override bool ProducesMap => true;

    private protected override VersionInfo DetectorVersionInfo => GetVersionInfo();

    internal static VersionInfo GetVersionInfo() => new(
        modelSignature: "ANOMTOY1",
        verWrittenCur: ModelStreams.FirstCheckedVersion,
        verReadableCur: ModelStreams.FirstCheckedVersion,
        verWeCanReadBack: 0x00010001,
        loaderAssemblyName: typeof(ToyTransformer).Assembly.FullName,
        loaderSignature: LoaderSignature,
        loaderSignatureAlt: null);

    internal static ToyTransformer Create(IHostEnvironment env, ModelLoadContext ctx) => new(env, ctx);
}

/// <summary>A second toy detector (no maps, its own signatures) to check models are not mixed up.</summary>
internal sealed class OtherToyTransformer : ToyTransformerBase
{
    internal const string LoaderSignature = "AnomalyToy2Transform";

    internal OtherToyTransformer(IHostEnvironment env, ToyOptions options, float mean)
        : base(env, nameof(OtherToyTransformer), options, mean)
    {
    }

    private OtherToyTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : base(env, nameof(OtherToyTransformer), ctx, GetVersionInfo())
    {
    }

    public override bool ProducesMap => false;

    private protected override VersionInfo DetectorVersionInfo => GetVersionInfo();

    internal static VersionInfo GetVersionInfo() => new(
        modelSignature: "ANOMTOY2",
        verWrittenCur: ModelStreams.FirstCheckedVersion,
        verReadableCur: ModelStreams.FirstCheckedVersion,
        verWeCanReadBack: 0x00010001,
        loaderAssemblyName: typeof(OtherToyTransformer).Assembly.FullName,
        loaderSignature: LoaderSignature,
        loaderSignatureAlt: null);

    internal static OtherToyTransformer Create(IHostEnvironment env, ModelLoadContext ctx) => new(env, ctx);
}

/// <summary>Fits <see cref="ToyTransformer"/>: the mean of all normalized training pixel values.</summary>
internal sealed class ToyEstimator : ImageAnomalyEstimatorBase<ToyTransformer>
{
    private readonly ToyOptions _options;

    public ToyEstimator(IHostEnvironment env, ToyOptions options)
        : base(env, nameof(ToyEstimator), options, producesMap: true) => _options = options;

    public override ToyTransformer Fit(IDataView input)
    {
        double sum = 0;
        long n = 0;
        foreach ((float[] images, int count) in TrainingImageReader.ReadBatches(input, _options.InputColumnName, _options.Size, _options.Size, batchSize: 2, _options.MaxImagePixels))
        {
            foreach (float v in images)
                sum += v;
            n += images.Length;
        }
        return new ToyTransformer(Host, _options, (float)(sum / n));
    }
}
