// Declared here, beside the trainers that take it, in the namespace of the ML.NET options that expose it, so that users need no second using.
namespace Microsoft.ML.Anomaly.Vision;

/// <summary>How a DFM model turns an image's pooled deep features into an anomaly score.</summary>
public enum DfmScoreType
{
    /// <summary>
    /// Feature reconstruction error: the squared distance between the features and their reconstruction
    /// from the principal components. Also gives a per-position anomaly map.
    /// </summary>
    Fre = 0,

    /// <summary>
    /// Negative log-likelihood of the PCA-projected features under a Gaussian fitted to the training
    /// projections (up to the constant terms). Gives an image score only.
    /// </summary>
    Nll = 1,
}
