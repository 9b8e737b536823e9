using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Export;
using static Microsoft.ML.Anomaly.Vision.Export.OnnxGraphBuilder;

namespace Microsoft.ML.Anomaly.Vision.Dfm;

/// <summary>
/// DFM's scoring head as ONNX nodes, computing what <see cref="DfmModel.Score"/> and
/// <see cref="DfmAnomalyMapGenerator"/> compute: average pooling (window = stride, floor mode), the flattened
/// vector minus the PCA mean, its projection on the components, then either the reconstruction error (score:
/// its sum of squares; map: the squared error summed over channels per pooled position, upsampled bilinearly)
/// or the Gaussian negative log-likelihood of the projection (score only).
/// </summary>
internal static class DfmOnnxExport
{
    public static (string Score, string? Map) WriteHead(OnnxGraphBuilder graph, DfmModel model, string layerMap, int height, int width)
    {
        int kernel = model.PoolingKernelSize, dimension = model.FeatureDimension, components = model.ComponentCount;
        string pooled = kernel <= 1 ? layerMap
            : graph.Node("AveragePool", [layerMap], Ints("kernel_shape", kernel, kernel), Ints("strides", kernel, kernel));
        string centred = graph.Sub(graph.Reshape(pooled, 0, -1), graph.Floats("pca_mean", model.Pca.Mean, dimension));
        float[] basis = model.Pca.Components;   // [K, D]
        string? projection = components == 0 ? null
            : graph.MatMul(centred, graph.Floats("pca_components_t", TransposeMatrix(basis, components, dimension), dimension, components));

        if (model.Gaussian is SingleClassGaussian gaussian)
        {
            // Σ_j (((z − μ)·U_j) / S_j)² + 2·Σ log S_j, with column j of the matrix holding U_j / S_j.
            var whitening = new float[components * components];
            for (int j = 0; j < components; j++)
                for (int k = 0; k < components; k++)
                    whitening[k * components + j] = (float)(gaussian.Basis[j * components + k] / (double)gaussian.Sigma[j]);
            string whitened = graph.MatMul(graph.Sub(projection!, graph.Floats("gaussian_mean", gaussian.Mean, components)),
                graph.Floats("gaussian_whitening", whitening, components, components));
            string nll = graph.Add(graph.Reduce("ReduceSumSquare", whitened, [1], keepDims: false),
                graph.Scalar("log_determinant", (float)gaussian.LogDeterminantTerm));
            return (nll, null);
        }

        string residual = projection is null ? centred
            : graph.Sub(centred, graph.MatMul(projection, graph.Floats("pca_components", basis, components, dimension)));
        string squared = graph.Mul(residual, residual);
        string score = graph.Reduce("ReduceSum", squared, [1], keepDims: false);
        int positions = model.PooledHeight * model.PooledWidth;
        string perPosition = graph.Reduce("ReduceSum", graph.Reshape(squared, 0, model.Layer.Channels, positions), [1], keepDims: false);
        string map = graph.Separable(graph.Reshape(perPosition, 0, model.PooledHeight, model.PooledWidth),
            SeparableMap.Bilinear(model.PooledHeight, height, alignCorners: false), SeparableMap.Bilinear(model.PooledWidth, width, alignCorners: false));
        return (score, map);
    }
}
