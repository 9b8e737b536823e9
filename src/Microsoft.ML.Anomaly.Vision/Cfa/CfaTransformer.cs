using System.Buffers;
using Anomaly.Vision.Training;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Cfa;
using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(CfaTransformer), null, typeof(SignatureLoadModel), "CFA Image Anomaly Detector", CfaTransformer.LoaderSignature)]

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Scores images with a fitted CFA model: backbone features, the trained descriptor, then distances to the
/// memory bank of good-part features. Adds <c>Score</c> (the anomaly map's maximum) and <c>AnomalyMap</c>.
/// </summary>
public sealed class CfaTransformer : BackboneAnomalyTransformerBase
{
    internal const string LoaderSignature = "AnomalyCfaTransform";

    // Name of the model stream holding the CFA model (descriptor and memory bank).
    private const string ModelStreamName = "Cfa.bin";

    private readonly CfaModel _model;
    private readonly CfaAnomalyMapGenerator _maps;

    internal CfaTransformer(IHostEnvironment env, CfaOptions options, OnnxBackbone backbone, CfaModel model)
        : base(env, nameof(CfaTransformer), options, backbone)
    {
        _model = model;
        _maps = CreateMapGenerator();
    }

    private CfaTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : base(env, nameof(CfaTransformer), ctx, GetVersionInfo())
    {
        // *** Binary format *** (after the backbone; see SaveAlgorithm)
        // stream Cfa.bin: the CFA model (CfaModel.Write)
        _model = ModelStreams.LoadBinary(ctx, ModelStreamName, CfaModel.Read);
        CheckFittedLayerShapes(_model.Layers, "CFA");
        _maps = CreateMapGenerator();
    }

    /// <inheritdoc />
    public override bool ProducesMap => true;

    /// <summary>Number of memory-bank entries.</summary>
    public int MemoryBankSize => _model.BankSize;

    /// <summary>The fitted CFA model (descriptor weights and memory bank).</summary>
    public CfaModel Model => _model;

    private protected override VersionInfo DetectorVersionInfo => GetVersionInfo();

    internal static CfaTransformer Create(IHostEnvironment env, ModelLoadContext ctx) => new(env, ctx);

    private static VersionInfo GetVersionInfo() => MakeVersionInfo("ANOMCFA1", LoaderSignature, typeof(CfaTransformer));

    private CfaAnomalyMapGenerator CreateMapGenerator() => new(_model.MemoryBank.ToArray(), _model.BankSize, _model.DescriptorChannels,
        _model.NumNearestNeighbors, _model.GridHeight, _model.GridWidth, InputHeight, InputWidth);

    internal override (string Score, string? Map) WriteOnnxHead(Export.OnnxGraphBuilder graph, IReadOnlyList<string> layerMaps) =>
        CfaOnnxExport.WriteHead(graph, _model, layerMaps, InputHeight, InputWidth);

    private protected override void ScoreFeatures(float[][] layerMaps, int batch, Span<float> scores, Span<float> maps)
    {
        int perImage = _model.GridHeight * _model.GridWidth * _model.DescriptorChannels;
        // Tens of megabytes per batch: a pooled buffer spares the page faults of a fresh one. Describe writes every value.
        float[] features = ArrayPool<float>.Shared.Rent(batch * perImage);
        try
        {
            _model.Describe(layerMaps, batch, features);
            _maps.Generate(features, batch, scores, maps);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(features);
        }
    }

    private protected override void SaveAlgorithm(ModelSaveContext ctx) =>
        // *** Binary format *** (see the loading constructor)
        ModelStreams.SaveBinary(ctx, ModelStreamName, _model.Write);
}
