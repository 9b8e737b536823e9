using Anomaly.Vision.Training;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Cflow;
using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(CflowTransformer), null, typeof(SignatureLoadModel), "CFlow Image Anomaly Detector", CflowTransformer.LoaderSignature)]

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Scores images with fitted CFlow flows: per-layer log-likelihoods of the backbone features turned into an
/// anomaly map as anomalib's CFlow does. Adds <c>Score</c> (the map's maximum) and <c>AnomalyMap</c>.
/// </summary>
public sealed class CflowTransformer : BackboneAnomalyTransformerBase
{
    internal const string LoaderSignature = "AnomalyCflowTransform";

    // Name of the model stream holding the flows.
    private const string ModelStreamName = "Cflow.bin";

    private readonly CflowModel _model;

    internal CflowTransformer(IHostEnvironment env, CflowOptions options, OnnxBackbone backbone, CflowModel model)
        : base(env, nameof(CflowTransformer), options, backbone)
    {
        _model = model;
    }

    private CflowTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : base(env, nameof(CflowTransformer), ctx, GetVersionInfo())
    {
        // *** Binary format *** (after the backbone; see SaveAlgorithm)
        // stream Cflow.bin: the flows (CflowModel.Write)
        _model = ModelStreams.LoadBinary(ctx, ModelStreamName, reader => CflowModel.Read(reader));
        try
        {
            CheckFittedLayerShapes(_model.Layers, "CFlow");
        }
        catch
        {
            _model.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public override bool ProducesMap => true;

    /// <summary>The fitted flows.</summary>
    public CflowModel Model => _model;

    private protected override VersionInfo DetectorVersionInfo => GetVersionInfo();

    internal static CflowTransformer Create(IHostEnvironment env, ModelLoadContext ctx) => new(env, ctx);

    private static VersionInfo GetVersionInfo() => MakeVersionInfo("ANOMCFL1", LoaderSignature, typeof(CflowTransformer));

    private CflowAnomalyMapGenerator CreateMapGenerator() =>
        new(_model.Layers.Select(l => (l.Height, l.Width)).ToArray(), _model.LogLikelihoodReferences, InputHeight, InputWidth);

    internal override (string Score, string? Map) WriteOnnxHead(Export.OnnxGraphBuilder graph, IReadOnlyList<string> layerMaps) =>
        CflowOnnxExport.WriteHead(graph, _model, layerMaps, InputHeight, InputWidth);

    private protected override void ScoreFeatures(float[][] layerMaps, int batch, Span<float> scores, Span<float> maps)
    {
        var logLikelihoods = _model.Layers.Select(l => new float[batch * l.Height * l.Width]).ToArray();
        _model.LogLikelihoods(layerMaps, batch, logLikelihoods);
        var generator = CreateMapGenerator();
        int pixels = InputHeight * InputWidth;
        for (int image = 0; image < batch; image++)
            scores[image] = generator.Generate(logLikelihoods, image, maps.Slice(image * pixels, pixels));
    }

    private protected override void SaveAlgorithm(ModelSaveContext ctx) =>
        // *** Binary format *** (see the loading constructor)
        ModelStreams.SaveBinary(ctx, ModelStreamName, _model.Write);

    private protected override void DisposeAlgorithm() => _model.Dispose();
}
