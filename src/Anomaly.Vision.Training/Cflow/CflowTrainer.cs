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
    /// <exception cref="ArgumentException">Invalid options or features (a non-finite value among them); a full training batch has fewer fibers than <see cref="CflowTrainingOptions.FiberBatchSize"/>.</exception>
    /// <exception cref="InvalidOperationException">Training diverged: an epoch's mean loss is not finite.</exception>
    /// <exception cref="OperationCanceledException">Training was cancelled.</exception>
    public static CflowModel Train(IFeatureSource features, CflowTrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Train(features, options, progress, cancellationToken, throughLibTorch: false);

    /// <summary>Trains the decoders with <see cref="CflowCpuStep"/> on the CPU or, off the CPU (and on it for
    /// comparison), through LibTorch: autograd and torch.optim.Adam's update (<see cref="TorchAdam"/>).</summary>
    internal static CflowModel Train(IFeatureSource features, CflowTrainingOptions options,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken, bool throughLibTorch)
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
            // gradient, so that is exactly one Adam per decoder (which also spares updating idle decoders). The decoders
            // are independent, so on the CPU they train in parallel, one thread each, on the same fiber batches.
            bool handWritten = !throughLibTorch && device.type == DeviceType.CPU;
            var steps = handWritten ? flows.Select(f => new CflowCpuStep(f, options.LearningRate)).ToArray() : null;
            var optimizers = handWritten ? null : flows.Select(f => TorchAdam.Adam(f.Parameters(), options.LearningRate)).ToArray();
            try
            {
                var buffers = layers.Select(s => new float[fullBatch * s.Size]).ToArray();
                var codeValues = steps?.Select((_, l) => CfaTensors.ToArray(codes[l])).ToArray();
                var shuffles = new long[layers.Count][];
                var losses = new double[layers.Count];
                // The largest layers first, so that the last to start is the smallest.
                var byWork = Enumerable.Range(0, layers.Count).OrderByDescending(l => (long)layers[l].Height * layers[l].Width * layers[l].Channels).ToArray();
                for (int epoch = 0; epoch < options.Epochs; epoch++)
                {
                    Array.Clear(losses);
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
                            var shape = layers[l];
                            for (int i = 0; i < batch; i++)
                            {
                                var map = buffers[l].AsSpan(i * shape.Size, shape.Size);
                                features.Read((int)order[first + i], l, map);
                                if (epoch == 0)
                                    FeatureChecks.EnsureFinite(map, (int)order[first + i], l);
                            }
                            long total = (long)batch * shape.Height * shape.Width;
                            using var perm = randperm(total, generator: generator, dtype: ScalarType.Int64);
                            shuffles[l] = perm.data<long>().ToArray();
                            fiberCount += total;
                        }
                        if (steps is not null)
                        {
                            Parallel.ForEach(byWork, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, l =>
                                losses[l] += TrainLayer(steps[l], buffers[l], layers[l], shuffles[l], codeValues![l], options.FiberBatchSize, cancellationToken));
                            cancellationToken.ThrowIfCancellationRequested();
                        }
                        else
                        {
                            for (int l = 0; l < layers.Count; l++)
                                losses[l] += TrainLayer(flows[l], optimizers![l], buffers[l], batch, layers[l], shuffles[l], codes[l], options.FiberBatchSize, device, cancellationToken);
                        }
                    }
                    double meanLoss = losses.Sum() / fiberCount;
                    if (!double.IsFinite(meanLoss))
                        throw new InvalidOperationException(
                            $"CFlow training diverged in epoch {epoch + 1}: the mean loss is {meanLoss}. Lower {nameof(CflowTrainingOptions.LearningRate)} " +
                            $"(now {options.LearningRate}).");
                    progress?.Report(new TrainingProgress("training", epoch + 1, options.Epochs, meanLoss));
                }
                for (int l = 0; l < (steps?.Length ?? 0); l++)
                    steps![l].CopyTo(flows[l]);
            }
            finally
            {
                foreach (var optimizer in optimizers ?? [])
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

    /// <summary>
    /// One layer's steps over one image batch: its fibers in shuffled order, cut into fiber batches. There is one fiber
    /// batch when the batch has fewer fibers than that (the last, smaller image batch); otherwise total / fiberBatchSize
    /// of them, the last taking the remainder.
    /// </summary>
    private static IEnumerable<(int Start, int Length)> FiberBatches(int total, int fiberBatchSize)
    {
        int batches = Math.Max(1, total / fiberBatchSize);
        for (int f = 0; f < batches; f++)
            yield return (f * fiberBatchSize, f < batches - 1 ? fiberBatchSize : total - f * fiberBatchSize);
    }

    /// <summary>Trains one layer's decoder on one image batch with <see cref="CflowCpuStep"/>; returns the loss sum. Stops early, without throwing, on cancellation.</summary>
    private static double TrainLayer(CflowCpuStep step, float[] maps, LayerShape shape, long[] shuffle, float[] code,
        int fiberBatchSize, CancellationToken cancellationToken)
    {
        double lossSum = 0;
        foreach (var (start, length) in FiberBatches(shuffle.Length, fiberBatchSize))
        {
            if (cancellationToken.IsCancellationRequested)
                break;
            lossSum += step.Step(maps, shape.Height * shape.Width, shuffle.AsSpan(start, length), code);
        }
        return lossSum;
    }

    /// <summary>Trains one layer's decoder on one image batch through LibTorch; returns the loss sum.</summary>
    private static double TrainLayer(ConditionalFlow flow, TorchAdam optimizer, float[] buffer, int batch, LayerShape shape,
        long[] shuffle, Tensor code, int fiberBatchSize, Device device, CancellationToken cancellationToken)
    {
        int positions = shape.Height * shape.Width;
        using var batchScope = NewDisposeScope();
        using var lossSum = zeros(1, ScalarType.Float64, device);
        var maps = CflowModel.FromSpan(buffer.AsSpan(0, batch * shape.Size), new long[] { batch, shape.Channels, positions });
        var fibers = maps.to(device).transpose(1, 2).reshape(batch * positions, shape.Channels).contiguous();   // [(b h w), C]
        var conditions = code.repeat(batch, 1);                                                               // [(b h w), P]
        var order = tensor(shuffle).to(device);
        foreach (var (start, length) in FiberBatches(shuffle.Length, fiberBatchSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var step = NewDisposeScope();
            var index = order.narrow(0, start, length);
            var (mean, perFiber) = flow.Loss(fibers.index_select(0, index), conditions.index_select(0, index));
            optimizer.ZeroGrad();
            mean.backward();
            optimizer.Step();
            using (no_grad())
                lossSum.AddInPlace(perFiber.detach().sum().to(ScalarType.Float64));
        }
        return lossSum.item<double>();
    }
}
