using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace Anomaly.Vision.Training;

/// <summary>
/// A principal component analysis of feature vectors, fitted in double precision with TorchSharp and applied
/// in plain C#: <c>transform(x) = (x − mean)·V_k</c>, <c>inverse(z) = z·V_kᵀ + mean</c>, where the columns of
/// <c>V_k</c> are the first k right singular vectors of the mean-centred training matrix.
/// </summary>
internal sealed class Pca
{
    /// <summary>Creates a fitted PCA from its parameters.</summary>
    /// <param name="mean">Training mean, one value per feature dimension.</param>
    /// <param name="components">The kept components, component-major: <c>componentCount × mean.Length</c>.</param>
    /// <param name="componentCount">Number of kept components.</param>
    internal Pca(float[] mean, float[] components, int componentCount)
    {
        if (components.Length != (long)componentCount * mean.Length)
            throw new ArgumentException($"Expected {componentCount}×{mean.Length} component values, got {components.Length}.", nameof(components));
        Mean = mean;
        Components = components;
        ComponentCount = componentCount;
    }

    /// <summary>Feature dimension.</summary>
    public int Dimension => Mean.Length;

    /// <summary>Number of kept components.</summary>
    public int ComponentCount { get; }

    /// <summary>Training mean.</summary>
    public float[] Mean { get; }

    /// <summary>Kept components (right singular vectors), component-major: row k is component k.</summary>
    public float[] Components { get; }

    /// <summary>
    /// The number of components anomalib's PCA keeps for <paramref name="level"/>. For a level in (0, 1] this is
    /// the first index i (0-based) at which Σ_{j≤i} s_j² / Σ_j s_j² ≥ level; note that it is an index, so the
    /// components kept explain less than the requested share (it takes i + 1 components to reach it). Should
    /// rounding keep the final ratio below the level, the last index is taken. For a level above 1 it is the
    /// integer part of the level.
    /// </summary>
    /// <param name="singularValues">Singular values of the centred training matrix, descending.</param>
    /// <param name="level">Variance share in (0, 1] or a component count above 1.</param>
    internal static int ComponentCountFor(ReadOnlySpan<double> singularValues, double level)
    {
        if (level > 1)
            return (int)level;
        double total = 0;
        foreach (double s in singularValues)
            total += s * s;
        double cumulative = 0;
        for (int i = 0; i < singularValues.Length; i++)
        {
            cumulative += singularValues[i] * singularValues[i];
            if (cumulative / total >= level)
                return i;
        }
        return singularValues.Length - 1;
    }

    /// <summary>
    /// Fits the PCA to the rows of <paramref name="data"/> (N × D, float64; left unchanged).
    /// </summary>
    /// <param name="data">Training matrix, one feature vector per row.</param>
    /// <param name="level">Variance share in (0, 1] or a component count above 1.</param>
    /// <param name="centred">Receives <c>data − mean</c> (N × D, float64), owned by the caller's dispose scope.</param>
    /// <param name="basis">Receives <c>V_k</c> (D × k, float64), owned by the caller's dispose scope.</param>
    /// <exception cref="ArgumentException">The training features have no variance, or the component count exceeds what the data gives.</exception>
    internal static Pca Fit(Tensor data, double level, out Tensor centred, out Tensor basis)
    {
        long n = data.shape[0], d = data.shape[1];
        var mean = data.mean(new long[] { 0 });
        centred = data - mean;
        var (_, s, vh) = linalg.svd(centred, fullMatrices: false);

        double[] singular = ToDoubles(s);
        double energy = 0;
        foreach (double v in singular)
            energy += v * v;
        double scale = data.Square().sum().item<double>();
        if (!(energy > 1e-20 * scale) || energy == 0)
            throw new ArgumentException(
                $"The {n} training feature vectors are (nearly) identical: their variance is zero, so no principal components exist. " +
                "Train on images that differ.", "features");

        int k = ComponentCountFor(singular, level);
        if (k > singular.Length)
            throw new ArgumentException(
                $"{k} principal components were requested but {n} training images of {d} features give at most {singular.Length}.", "features");

        basis = vh[..k].t();                              // D × k
        float[] meanValues = ToFloats(mean);
        float[] components = ToFloats(vh[..k].contiguous()); // k × D, component-major
        return new Pca(meanValues, components, k);
    }

    /// <summary>Projects a centred vector onto the components: <c>z_k = ⟨centred, V_k⟩</c>.</summary>
    /// <param name="centred">A feature vector minus <see cref="Mean"/>.</param>
    /// <param name="projection">Receives <see cref="ComponentCount"/> values.</param>
    internal void Project(ReadOnlySpan<float> centred, Span<float> projection)
    {
        int d = Dimension;
        for (int k = 0; k < ComponentCount; k++)
            projection[k] = TensorPrimitives.Dot(centred, Components.AsSpan(k * d, d));
    }

    /// <summary>Turns a centred vector into its reconstruction residual: <c>centred −= z·V_kᵀ</c>.</summary>
    /// <param name="centred">A feature vector minus <see cref="Mean"/>; receives the residual.</param>
    /// <param name="projection">The vector's projection from <see cref="Project"/>.</param>
    internal void SubtractReconstruction(Span<float> centred, ReadOnlySpan<float> projection)
    {
        int d = Dimension;
        for (int k = 0; k < ComponentCount; k++)
            TensorPrimitives.MultiplyAdd(Components.AsSpan(k * d, d), -projection[k], centred, centred);
    }

    internal static double[] ToDoubles(Tensor t)
    {
        using var cpu = t.to_type(ScalarType.Float64).contiguous().cpu();
        return MemoryMarshal.Cast<byte, double>(cpu.bytes).ToArray();
    }

    internal static float[] ToFloats(Tensor t)
    {
        using var cpu = t.to_type(ScalarType.Float32).contiguous().cpu();
        return MemoryMarshal.Cast<byte, float>(cpu.bytes).ToArray();
    }
}
