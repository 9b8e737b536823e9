using System.Numerics.Tensors;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Anomaly.Vision.Training;

/// <summary>
/// A Gaussian over K-dimensional vectors represented by the SVD of its centred, 1/√N-scaled training data
/// (<c>C = U·S²·Uᵀ</c>), as anomalib's DFM holds it. Its score is the negative log-likelihood up to constants:
/// <c>Σ_j (((x − μ)·U)_j / S_j)² + 2·Σ_j log S_j</c>.
/// </summary>
internal sealed class SingleClassGaussian
{
    /// <summary>Creates a fitted Gaussian from its parameters.</summary>
    /// <param name="mean">Mean μ, K values.</param>
    /// <param name="basis">Columns of U stored as rows: <c>sigma.Length × K</c>.</param>
    /// <param name="sigma">Singular values S, all positive.</param>
    internal SingleClassGaussian(float[] mean, float[] basis, float[] sigma)
    {
        if (basis.Length != (long)sigma.Length * mean.Length)
            throw new ArgumentException($"Expected {sigma.Length}×{mean.Length} basis values, got {basis.Length}.", nameof(basis));
        Mean = mean;
        Basis = basis;
        Sigma = sigma;
        double logSum = 0;
        foreach (float s in sigma)
            logSum += Math.Log(s);
        LogDeterminantTerm = 2 * logSum;
    }

    /// <summary>Dimension K of the modelled vectors.</summary>
    public int Dimension => Mean.Length;

    /// <summary>Mean μ.</summary>
    public float[] Mean { get; }

    /// <summary>Left singular vectors U of the centred data, one per row (row j is column j of U).</summary>
    public float[] Basis { get; }

    /// <summary>Singular values S of the centred data divided by √N.</summary>
    public float[] Sigma { get; }

    /// <summary><c>2·Σ log S_j</c>, the log-determinant of the covariance.</summary>
    public double LogDeterminantTerm { get; }

    /// <summary>Fits the Gaussian to the columns of <paramref name="data"/> (K × N, float64).</summary>
    /// <param name="data">One sample per column.</param>
    /// <exception cref="ArgumentException">The samples span fewer than K dimensions, so the Gaussian is singular.</exception>
    internal static SingleClassGaussian Fit(Tensor data)
    {
        long k = data.shape[0], n = data.shape[1];
        var mean = data.mean(new long[] { 1 });
        var scaled = (data - mean.reshape(-1, 1)).Div(Math.Sqrt(n));
        var (u, s, _) = linalg.svd(scaled, fullMatrices: false);
        double[] sigma = Pca.ToDoubles(s);
        if (sigma.Length < k || !(sigma[^1] > 1e-9 * sigma[0]))
            throw new ArgumentException(
                $"The {n} projected training features do not span all {k} principal directions (smallest singular value " +
                $"{(sigma.Length < k ? 0 : sigma[^1]):G3} against largest {sigma[0]:G3}), so the Gaussian of the NLL score is singular. " +
                "Use more (and more varied) training images or fewer components.", "features");
        return new SingleClassGaussian(Pca.ToFloats(mean), Pca.ToFloats(u.t().contiguous()), Pca.ToFloats(s));
    }

    /// <summary>The negative log-likelihood score of one vector.</summary>
    /// <param name="x">K values.</param>
    /// <param name="scratch">K values of scratch space.</param>
    internal double Score(ReadOnlySpan<float> x, Span<float> scratch)
    {
        int k = Dimension;
        TensorPrimitives.Subtract(x, Mean, scratch[..k]);
        double sum = 0;
        for (int j = 0; j < Sigma.Length; j++)
        {
            double w = TensorPrimitives.Dot(scratch[..k], Basis.AsSpan(j * k, k)) / (double)Sigma[j];
            sum += w * w;
        }
        return sum + LogDeterminantTerm;
    }
}
