using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>
/// Trains CFlow's decoders on the backbone features of normal images, as anomalib's CFlow does: one
/// conditional flow per layer, trained with Adam. For each batch of images and each layer,
/// the fibers (one feature vector per position and image) are shuffled and cut into fiber batches; each fiber
/// batch takes one optimizer step on mean(−log σ(log p(x | position) / C)). After training, the
/// model's per-layer log-likelihood references are set from the training images (see
/// <see cref="CflowModel.LogLikelihoodReferences"/>).
/// </summary>
public static class CflowTrainer
{
    /// <summary>Trains the decoders.</summary>
    /// <param name="features">Backbone features of the training images (one or more layers, at least 2 channels each).</param>
    /// <param name="options">Training settings.</param>
    /// <param name="progress">Receives ("training", epoch, epochs, mean per-fiber loss of that epoch) after every epoch.</param>
    /// <param name="cancellationToken">Checked before every flow is built, every layer's batch is read and every optimizer step.</param>
    /// <returns>The trained model, on the training device.</returns>
    /// <exception cref="ArgumentException">Invalid options or features; a full training batch has fewer fibers than <see cref="CflowTrainingOptions.FiberBatchSize"/>.</exception>
    /// <exception cref="OperationCanceledException">Training was cancelled.</exception>
    public static CflowModel Train(IFeatureSource features, CflowTrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Train(features, options, progress, cancellationToken, perParameterAdam: false);

    /// <summary>Trains the decoders, with <see cref="FusedAdam"/> on the CPU or, for comparison (and off the CPU), TorchSharp's per-parameter Adam.</summary>
    internal static CflowModel Train(IFeatureSource features, CflowTrainingOptions options,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken, bool perParameterAdam)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(nameof(options));
        if (features.Count <= 0)
            throw new ArgumentException("There are no training images.", nameof(features));
        var layers = features.Layers;
        if (layers is null || layers.Count == 0)
            throw new ArgumentException("The features have no layers.", nameof(features));
        int fullBatch = Math.Min(options.BatchSize, features.Count);
        for (int l = 0; l < layers.Count; l++)
        {
            if (layers[l].Channels < 2 || layers[l].Height < 1 || layers[l].Width < 1)
                throw new ArgumentException($"Layer {l} shape {layers[l]} is unusable: a flow needs at least 2 channels and a non-empty grid.", nameof(features));
            long fibers = (long)fullBatch * layers[l].Height * layers[l].Width;
            if (fibers < options.FiberBatchSize)
                throw new ArgumentException(
                    $"A batch of {fullBatch} images gives only {fibers} fibers on layer {l} ({layers[l].Height}×{layers[l].Width}), fewer than " +
                    $"{nameof(CflowTrainingOptions.FiberBatchSize)} {options.FiberBatchSize}: lower the fiber batch size or raise the batch size.",
                    nameof(options));
        }

        TorchRuntime.EnsureAvailable();
        var device = TorchRuntime.SelectDevice(options.Device, options.CudaDeviceIndex);
        using var generator = new Generator((ulong)(uint)options.Seed);
        int conditionSize = options.ConditionVectorSize;

        var flows = new List<ConditionalFlow>();
        var codes = new List<Tensor>();
        try
        {
            foreach (var shape in layers)
            {
                cancellationToken.ThrowIfCancellationRequested();
                flows.Add(ConditionalFlow.Create(shape.Channels, conditionSize, options.CouplingBlocks, options.ClampAlpha,
                    options.PermuteSoft, generator, ScalarType.Float32, device));
            }
            foreach (var shape in layers)
            {
                using var scope = NewDisposeScope();
                var code = CflowModel.FromSpan(PositionalEncoding.Create(conditionSize, shape.Height, shape.Width),
                    new long[] { conditionSize, shape.Height * shape.Width });
                codes.Add(code.t().contiguous().to(device).DetachFromDisposeScope());   // [H·W, P]
            }

            // anomalib steps one Adam over all decoders' parameters after zeroing the gradients to None; each step's
            // loss involves one decoder only, and Adam keeps per-parameter state and skips parameters without a
            // gradient, so that is exactly one Adam per decoder (which also spares updating idle decoders).
            // On the CPU a fused Adam (same update, up to rounding) cuts the per-step overhead; see FusedAdam.
            bool fused = !perParameterAdam && device.type == DeviceType.CPU;
            var optimizers = flows.Select(f => fused
                ? (ILossStepper)new FusedAdam(f.Parameters(), options.LearningRate)
                : new PerParameterAdam(f.Parameters(), options.LearningRate)).ToArray();
            try
            {
                using var lossSum = zeros(1, ScalarType.Float64, device);
                var buffers = layers.Select(s => new float[fullBatch * s.Size]).ToArray();
                for (int epoch = 0; epoch < options.Epochs; epoch++)
                {
                    lossSum.zero_();
                    long fiberCount = 0;
                    long[] order;
                    using (var perm = randperm(features.Count, generator: generator, dtype: ScalarType.Int64))
                        order = perm.data<long>().ToArray();
                    for (int first = 0; first < order.Length; first += options.BatchSize)
                    {
                        int batch = Math.Min(options.BatchSize, order.Length - first);
                        for (int l = 0; l < layers.Count; l++)
                        {
                            cancellationToken.ThrowIfCancellationRequested();
                            fiberCount += TrainLayer(features, l, order.AsSpan(first, batch), buffers[l], flows[l], codes[l],
                                optimizers[l], options.FiberBatchSize, generator, device, lossSum, cancellationToken);
                        }
                    }
                    double meanLoss = lossSum.item<double>() / fiberCount;
                    progress?.Report(new TrainingProgress("training", epoch + 1, options.Epochs, meanLoss));
                }
            }
            finally
            {
                foreach (var optimizer in optimizers)
                    optimizer.Dispose();
            }
            var model = new CflowModel(layers, conditionSize, options.ClampAlpha, options.PermuteSoft, flows, device);
            flows.Clear();
            try
            {
                model.CalibrateReferences(features, fullBatch);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            return model;
        }
        finally
        {
            foreach (var flow in flows)
                flow.Dispose();
            foreach (var code in codes)
                code.Dispose();
        }
    }

    /// <summary>Shuffles one layer's fibers of one image batch and takes one step per fiber batch; returns the fiber count.</summary>
    private static long TrainLayer(IFeatureSource features, int layer, ReadOnlySpan<long> images, float[] buffer,
        ConditionalFlow flow, Tensor code, ILossStepper optimizer, int fiberBatchSize, Generator generator,
        Device device, Tensor lossSum, CancellationToken cancellationToken)
    {
        var shape = features.Layers[layer];
        int positions = shape.Height * shape.Width;
        int batch = images.Length;
        for (int i = 0; i < batch; i++)
            features.Read((int)images[i], layer, buffer.AsSpan(i * shape.Size, shape.Size));

        using var batchScope = NewDisposeScope();
        var maps = CflowModel.FromSpan(buffer.AsSpan(0, batch * shape.Size), new long[] { batch, shape.Channels, positions });
        var fibers = maps.to(device).transpose(1, 2).reshape(batch * positions, shape.Channels).contiguous();   // [(b h w), C]
        var conditions = code.repeat(batch, 1);                                                               // [(b h w), P]
        long total = (long)batch * positions;
        var shuffle = randperm(total, generator: generator, dtype: ScalarType.Int64).to(device);

        // One fiber batch when the last, smaller image batch has fewer fibers than a fiber batch; otherwise
        // total / fiberBatchSize batches, the last one taking the remainder.
        long fiberBatches = Math.Max(1, total / fiberBatchSize);
        for (long f = 0; f < fiberBatches; f++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var step = NewDisposeScope();
            long start = f * fiberBatchSize;
            long length = f < fiberBatches - 1 ? fiberBatchSize : total - start;
            var index = shuffle.narrow(0, start, length);
            var x = fibers.index_select(0, index);
            var c = conditions.index_select(0, index);
            var (mean, perFiber) = flow.Loss(x, c);
            optimizer.Step(mean);
            using (no_grad())
                lossSum.add_(perFiber.detach().sum().to(ScalarType.Float64));
        }
        return total;
    }
}
