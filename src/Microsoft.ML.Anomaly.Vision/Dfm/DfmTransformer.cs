using Anomaly.Vision.Training;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Dfm;
using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(DfmTransformer), null, typeof(SignatureLoadModel), "DFM Image Anomaly Detector", DfmTransformer.LoaderSignature)]

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Scores images with a fitted DFM model. Adds <c>Score</c> and, for the feature-reconstruction score,
/// <c>AnomalyMap</c> (the reconstruction error per pooled position, upsampled to the input size).
/// </summary>
public sealed class DfmTransformer : BackboneAnomalyTransformerBase
{
    internal const string LoaderSignature = "AnomalyDfmTransform";

    // Name of the model stream holding the DFM model (PCA and Gaussian).
    private const string ModelStreamName = "Dfm.bin";

    private readonly DfmModel _model;
    private readonly DfmAnomalyMapGenerator _maps;

    internal DfmTransformer(IHostEnvironment env, DfmOptions options, OnnxBackbone backbone, DfmModel model)
        : base(env, nameof(DfmTransformer), options, backbone)
    {
        _model = model;
        _maps = new DfmAnomalyMapGenerator(model.PooledHeight, model.PooledWidth, InputHeight, InputWidth);
    }

    private DfmTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : base(env, nameof(DfmTransformer), ctx, GetVersionInfo())
    {
        // *** Binary format *** (after the backbone; see SaveAlgorithm)
        // stream Dfm.bin: the DFM model (DfmModel.Write)
        _model = ModelStreams.LoadBinary(ctx, ModelStreamName, DfmModel.Read);
        CheckFittedLayerShapes([_model.Layer], "DFM");
        _maps = new DfmAnomalyMapGenerator(_model.PooledHeight, _model.PooledWidth, InputHeight, InputWidth);
    }

    /// <inheritdoc />
    public override bool ProducesMap => _model.ScoreType == DfmScoreType.Fre;

    /// <summary>The fitted DFM model.</summary>
    public DfmModel Model => _model;

    private protected override VersionInfo DetectorVersionInfo => GetVersionInfo();

    internal static DfmTransformer Create(IHostEnvironment env, ModelLoadContext ctx) => new(env, ctx);

    private static VersionInfo GetVersionInfo() => MakeVersionInfo("ANOMDFM1", LoaderSignature, typeof(DfmTransformer));

    internal override (string Score, string? Map) WriteOnnxHead(Export.OnnxGraphBuilder graph, IReadOnlyList<string> layerMaps) =>
        DfmOnnxExport.WriteHead(graph, _model, layerMaps[0], InputHeight, InputWidth);

    private protected override void ScoreFeatures(float[][] layerMaps, int batch, Span<float> scores, Span<float> maps)
    {
        int size = _model.Layer.Size;
        int pixels = InputHeight * InputWidth;
        var errors = ProducesMap ? new float[_model.PooledHeight * _model.PooledWidth] : [];
        for (int image = 0; image < batch; image++)
        {
            scores[image] = _model.Score(layerMaps[0].AsSpan(image * size, size), errors);
            if (ProducesMap)
                _maps.Generate(errors, maps.Slice(image * pixels, pixels));
        }
    }

    private protected override void SaveAlgorithm(ModelSaveContext ctx) =>
        // *** Binary format *** (see the loading constructor)
        ModelStreams.SaveBinary(ctx, ModelStreamName, _model.Write);
}
