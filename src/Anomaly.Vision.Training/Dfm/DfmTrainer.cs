using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>Fits DFM (deep feature modelling) detectors, as anomalib's DFM does.</summary>
public static class DfmTrainer
{
    /// <summary>
    /// Fits a DFM model: each training image's layer map is average-pooled and flattened into one vector; a PCA is
    /// fitted to these vectors (SVD in double precision) and, for <see cref="DfmScoreType.Nll"/>, a Gaussian to their
    /// projections.
    /// </summary>
    /// <param name="features">Features of the good training images; exactly one layer and at least two images.</param>
    /// <param name="options">Settings.</param>
    /// <param name="cancellationToken">Cancels the fit between images.</param>
    /// <returns>The fitted model.</returns>
    /// <exception cref="ArgumentException">An argument is invalid, or the features cannot support the model (the message says why).</exception>
    /// <remarks>
    /// For the NLL score the Gaussian is fitted to the training vectors projected as test vectors are,
    /// <c>(x − mean)·V_k</c>. anomalib's DFM centres its training matrix in place before projecting it, so its Gaussian
    /// sees <c>(x − 2·mean)·V_k</c> and its NLL measures <c>x·V_k</c> instead of the deviation from the mean; that side
    /// effect is not reproduced here.
    /// </remarks>
    public static DfmModel Fit(IFeatureSource features, DfmTrainingOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(options);
        if (features.Layers.Count != 1)
            throw new ArgumentException($"DFM uses exactly one backbone layer; the feature source has {features.Layers.Count}.", nameof(features));
        int n = features.Count;
        if (n < 2)
            throw new ArgumentException($"DFM needs at least 2 training images; the feature source has {n}.", nameof(features));
        options.Validate(nameof(options));
        var layer = features.Layers[0];
        int kernel = options.PoolingKernelSize;
        if (kernel > layer.Height || kernel > layer.Width)
            throw new ArgumentException(
                $"PoolingKernelSize {kernel} is larger than the {layer.Height}×{layer.Width} feature map; use at most {Math.Min(layer.Height, layer.Width)}.", nameof(options));
        float share = options.VarianceShare;
        // The float setting is read as the decimal number it shows (0.97f → 0.97), as a Python float would hold it.
        double level = (double)(decimal)share;

        int ph = DfmPooling.PooledSize(layer.Height, kernel), pw = DfmPooling.PooledSize(layer.Width, kernel);
        long dimensionLong = (long)layer.Channels * ph * pw;
        if (dimensionLong * n > Array.MaxLength)
            throw new ArgumentException($"{n} images of {dimensionLong} pooled features do not fit in one array; use a larger pooling kernel or fewer images.", nameof(features));
        int d = (int)dimensionLong;

        if (level > 1)
        {
            int requested = (int)level;
            if (requested > Math.Min(n, d))
                throw new ArgumentException(
                    $"VarianceShare asks for {requested} principal components but {n} images of {d} pooled features give at most {Math.Min(n, d)}.", nameof(options));
            if (options.ScoreType == DfmScoreType.Nll && n <= requested)
                throw new ArgumentException(
                    $"The NLL score with {requested} components needs at least {requested + 1} training images (the Gaussian is singular otherwise); got {n}.", nameof(features));
        }

        var matrix = new float[(long)n * d];
        var map = new float[layer.Size];
        for (int i = 0; i < n; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            features.Read(i, 0, map);
            var row = matrix.AsSpan(i * d, d);
            DfmPooling.Pool(map, layer, kernel, row);
            foreach (float v in row)
                if (!float.IsFinite(v))
                    throw new ArgumentException($"Training image {i} has a non-finite feature value ({v}).", nameof(features));
        }
        cancellationToken.ThrowIfCancellationRequested();

        var device = TorchRuntime.SelectDevice(options.Device, options.CudaDeviceIndex);
        using var scope = NewDisposeScope();
        var data = empty(new long[] { n, d }, ScalarType.Float32);
        MemoryMarshal.AsBytes(matrix.AsSpan()).CopyTo(data.bytes);
        data = data.to(ScalarType.Float64).to(device);

        var pca = Pca.Fit(data, level, out var centred, out var basis);
        SingleClassGaussian? gaussian = null;
        if (options.ScoreType == DfmScoreType.Nll)
        {
            int k = pca.ComponentCount;
            if (k == 0)
                throw new ArgumentException(
                    $"VarianceShare {share} keeps no principal component (the first component alone reaches the share), so the NLL score has nothing to model; raise VarianceShare.", nameof(options));
            if (n <= k)
                throw new ArgumentException(
                    $"The NLL score with {k} components needs at least {k + 1} training images (the Gaussian is singular otherwise); got {n}.", nameof(features));
            cancellationToken.ThrowIfCancellationRequested();
            var projected = matmul(centred, basis);
            gaussian = SingleClassGaussian.Fit(projected.t());
        }
        return new DfmModel(layer, kernel, options.ScoreType, pca, gaussian);
    }
}
