using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;

namespace Microsoft.ML;

/// <summary>Extension methods that add the image anomaly detectors to <c>mlContext.Transforms</c>.</summary>
public static class AnomalyVisionCatalog
{
    /// <summary>
    /// Detects anomalies in images with CFA (coupled-hypersphere-based feature adaptation). Fit on images of
    /// good parts; the transformer adds a <c>Score</c> and a pixel <c>AnomalyMap</c> per image.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The detector's options; the backbone is <see cref="ImageNetBackbones.ResNet18"/> unless <see cref="BackboneDetectorOptions.Backbone"/> or <see cref="BackboneDetectorOptions.BackbonePath"/> names another.</param>
    public static CfaEstimator DetectCfaAnomalies(this TransformsCatalog catalog, CfaOptions options) =>
        new(CatalogUtils.GetEnvironment(Checked(catalog)), options);

    /// <summary>Detects anomalies in images with CFA, with anomalib's default settings.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="backbonePath">The backbone's ONNX file.</param>
    /// <param name="inputColumnName">The image column (MLImage) or a text column of image paths.</param>
    /// <param name="imageSize">Height and width images are resized to.</param>
    public static CfaEstimator DetectCfaAnomalies(this TransformsCatalog catalog, string backbonePath,
        string inputColumnName = ImageAnomalyDetectorOptions.DefaultInputColumnName, int imageSize = BackboneDetectorOptions.DefaultImageSize) =>
        catalog.DetectCfaAnomalies(new CfaOptions { BackbonePath = backbonePath, InputColumnName = inputColumnName, ImageHeight = imageSize, ImageWidth = imageSize });

    /// <summary>
    /// Detects anomalies in images with DFM (deep feature modeling: PCA of pooled backbone features). Fit on
    /// images of good parts; the transformer adds a <c>Score</c> and, for the reconstruction-error score, an <c>AnomalyMap</c>.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The detector's options; the backbone is <see cref="ImageNetBackbones.ResNet18"/> unless <see cref="BackboneDetectorOptions.Backbone"/> or <see cref="BackboneDetectorOptions.BackbonePath"/> names another.</param>
    public static DfmEstimator DetectDfmAnomalies(this TransformsCatalog catalog, DfmOptions options) =>
        new(CatalogUtils.GetEnvironment(Checked(catalog)), options);

    /// <summary>Detects anomalies in images with DFM, with anomalib's default settings.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="backbonePath">The backbone's ONNX file.</param>
    /// <param name="inputColumnName">The image column (MLImage) or a text column of image paths.</param>
    /// <param name="imageSize">Height and width images are resized to.</param>
    public static DfmEstimator DetectDfmAnomalies(this TransformsCatalog catalog, string backbonePath,
        string inputColumnName = ImageAnomalyDetectorOptions.DefaultInputColumnName, int imageSize = BackboneDetectorOptions.DefaultImageSize) =>
        catalog.DetectDfmAnomalies(new DfmOptions { BackbonePath = backbonePath, InputColumnName = inputColumnName, ImageHeight = imageSize, ImageWidth = imageSize });

    /// <summary>
    /// Detects anomalies in images with CFlow (conditional normalizing flows). Fit on images of good parts;
    /// the transformer adds a <c>Score</c> and a pixel <c>AnomalyMap</c> per image.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The detector's options; the backbone is <see cref="ImageNetBackbones.ResNet18"/> unless <see cref="BackboneDetectorOptions.Backbone"/> or <see cref="BackboneDetectorOptions.BackbonePath"/> names another.</param>
    public static CflowEstimator DetectCflowAnomalies(this TransformsCatalog catalog, CflowOptions options) =>
        new(CatalogUtils.GetEnvironment(Checked(catalog)), options);

    /// <summary>Detects anomalies in images with CFlow, with anomalib's default settings.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="backbonePath">The backbone's ONNX file.</param>
    /// <param name="inputColumnName">The image column (MLImage) or a text column of image paths.</param>
    /// <param name="imageSize">Height and width images are resized to.</param>
    public static CflowEstimator DetectCflowAnomalies(this TransformsCatalog catalog, string backbonePath,
        string inputColumnName = ImageAnomalyDetectorOptions.DefaultInputColumnName, int imageSize = BackboneDetectorOptions.DefaultImageSize) =>
        catalog.DetectCflowAnomalies(new CflowOptions { BackbonePath = backbonePath, InputColumnName = inputColumnName, ImageHeight = imageSize, ImageWidth = imageSize });

    private static TransformsCatalog Checked(TransformsCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return catalog;
    }
}
