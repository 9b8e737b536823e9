using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>
/// Trains CFA (coupled-hypersphere-based feature adaptation) on backbone features of normal images, as anomalib's
/// CFA does: the memory bank is the mean (over batches, of batch means) of the untrained descriptor's
/// target-oriented features, optionally clustered with k-means; then the descriptor is trained with AdamW (AMSGrad)
/// on the coupled-hypersphere loss against that fixed bank.
/// </summary>
public static class CfaTrainer
{
    /// <summary>Most Lloyd iterations of the memory bank's k-means.</summary>
    public const int KMeansMaxIterations = 3000;

    /// <summary>Trains a CFA model.</summary>
    /// <param name="features">Backbone features of the normal training images; the first layer fixes the feature grid.</param>
    /// <param name="options">Training settings.</param>
    /// <param name="progress">Receives ("memory bank", images done, images) while the bank is built and
    /// ("training", epoch, epochs, mean loss of the epoch) after every epoch.</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <returns>The trained model.</returns>
    /// <exception cref="ArgumentException">No images, unusable layer shapes, invalid options, a memory bank smaller than
    /// NumNearestNeighbors + NumHardNegativeFeatures, or a feature value that is NaN or infinite (the message names the image).</exception>
    /// <exception cref="OperationCanceledException">Training was cancelled.</exception>
    public static CfaModel Train(IFeatureSource features, CfaTrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
        => Train(features, options, progress, cancellationToken, chunkBytes: null, cpuKernels: null);

    /// <summary>
    /// Trains with the per-step work cut into chunks of about <paramref name="chunkBytes"/> of distances
    /// (null: <see cref="DefaultChunkBytes"/> for the device), each step run by the C# CPU kernels (<see cref="CfaCpuStep"/>:
    /// the fused nearest-entry kernel and the descriptor in C#) or by LibTorch (convolutions, top-k and autograd); null:
    /// the C# kernels on a CPU. Neither changes the model beyond the order of additions. <paramref name="projectionRank"/>
    /// sets the C# kernel's bound that skips bank entries (null: <see cref="MemoryBankScorer.ProjectionRankFor"/>; 0: none),
    /// which does not change the model at all.
    /// </summary>
    internal static CfaModel Train(IFeatureSource features, CfaTrainingOptions options,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken, long? chunkBytes, bool? cpuKernels, int? projectionRank = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(nameof(options));
        if (features.Count <= 0)
            throw new ArgumentException("The feature source holds no images; CFA needs at least one normal training image.", nameof(features));
        var layers = features.Layers?.ToArray() ?? Array.Empty<LayerShape>();
        if (layers.Length == 0)
            throw new ArgumentException("The feature source has no layers.", nameof(features));
        for (int l = 0; l < layers.Length; l++)
            if (layers[l].Channels <= 0 || layers[l].Height <= 0 || layers[l].Width <= 0)
                throw new ArgumentException($"Layer {l} shape {layers[l]} has a non-positive dimension.", nameof(features));
        int gridH = layers[0].Height, gridW = layers[0].Width;
        if (gridH < 2 || gridW < 2)
            throw new ArgumentException($"The first layer's grid is {gridH}×{gridW}; CFA's coordinate channels need at least 2×2.", nameof(features));
        int inChannels = layers.Sum(l => l.Channels);
        int outChannels = inChannels / options.GammaD;
        if (outChannels < 1)
            throw new ArgumentException($"GammaD {options.GammaD} exceeds the {inChannels} input channels; the descriptor would have no output channel.", nameof(options));
        int patches = gridH * gridW;
        int bankSize = options.GammaC > 1 ? patches / options.GammaC : patches;
        long k = (long)options.NumNearestNeighbors + options.NumHardNegativeFeatures;
        if (bankSize < k)
            throw new ArgumentException(
                $"The memory bank would hold {bankSize} entries ({gridH}×{gridW} patches / GammaC {options.GammaC}), fewer than the " +
                $"{k} nearest entries the loss needs (NumNearestNeighbors {options.NumNearestNeighbors} + NumHardNegativeFeatures " +
                $"{options.NumHardNegativeFeatures}). Use a smaller GammaC or fewer neighbours, or a larger input.", nameof(options));

        TorchRuntime.EnsureAvailable();
        var device = TorchRuntime.SelectDevice(options.Device, options.CudaDeviceIndex);
        using var descriptor = new Descriptor(layers, outChannels, options.Seed, device);

        bool fused = cpuKernels ?? device.type == DeviceType.CPU;
        if (fused && device.type != DeviceType.CPU)
            throw new ArgumentException("The C# kernels run on the CPU only.", nameof(cpuKernels));
        // The fused nearest-entry kernel keeps no distance matrix: a chunk holds only feature maps.
        var chunks = StepChunks.For(chunkBytes ?? DefaultChunkBytes(device), patches, fused ? 0 : bankSize, descriptor.OutChannels + descriptor.InChannels);
        float[] bank = BuildMemoryBank(features, layers, descriptor, options, bankSize, chunks, fused, device, progress, cancellationToken);
        TrainDescriptor(features, layers, descriptor, bank, bankSize, options, chunks, fused, projectionRank, device, progress, cancellationToken);

        return new CfaModel(layers, outChannels, options.NumNearestNeighbors, descriptor.WeightArray(), descriptor.BiasArray(), bank);
    }

    /// <summary>
    /// Distances (and feature maps) a step may hold at once on a CPU. Below glibc's largest mmap threshold (32 MiB), so
    /// LibTorch's freed buffers are reused rather than mapped and zeroed afresh every step, and near the cache sizes.
    /// With the fused kernel, which holds no distances, this makes chunks of one 256-pixel image.
    /// </summary>
    internal const long CpuChunkBytes = 16L << 20;

    private static long DefaultChunkBytes(Device device) => device.type == DeviceType.CPU ? CpuChunkBytes : 1L << 30;

    private static float[] BuildMemoryBank(IFeatureSource features, LayerShape[] layers, Descriptor descriptor,
        CfaTrainingOptions options, int bankSize, StepChunks chunks, bool fused, Device device, IProgress<TrainingProgress>? progress,
        CancellationToken cancellationToken)
    {
        int count = features.Count;
        int patches = layers[0].Height * layers[0].Width;
        CfaCpuStep? cpu = null;
        if (fused)
        {
            cpu = new CfaCpuStep(descriptor, bank: null, bankSize, options, projectionRank: 0);
            cpu.Begin();
        }
        float[] centroids;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            Tensor? running = null;
            int batchIndex = 0;
            for (int start = 0; start < count; start += options.BatchSize, batchIndex++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = Math.Min(options.BatchSize, count - start);
                using var step = NewDisposeScope();
                Tensor? sum = null;
                for (int offset = 0; offset < n; offset += chunks.ImagesPerChunk)
                {
                    var indices = Enumerable.Range(start + offset, Math.Min(chunks.ImagesPerChunk, n - offset)).ToArray();
                    var maps = LoadBatch(features, layers, indices, device, checkFinite: true);
                    var chunkSum = cpu is null
                        ? descriptor.Forward(maps).sum(new long[] { 0 })
                        : CfaTensors.FromArray(cpu.Describe(maps), new long[] { indices.Length, patches, descriptor.OutChannels })
                            .sum(new long[] { 0 }).permute(1, 0).reshape(descriptor.OutChannels, layers[0].Height, layers[0].Width);
                    sum = sum is null ? chunkSum : sum.AddInPlace(chunkSum);
                }
                var next = MemoryBank.Accumulate(running, sum!.DivInPlace((double)n), batchIndex);
                running?.Dispose();
                running = next.MoveToOuterDisposeScope();
                progress?.Report(new TrainingProgress("memory bank", start + n, count, double.NaN));
            }
            centroids = CfaTensors.ToArray(MemoryBank.ToPatchMajor(running!));
        }

        if (options.GammaC <= 1)
            return centroids;
        return KMeans.Fit(centroids, patches, descriptor.OutChannels, bankSize, options.Seed, KMeansMaxIterations,
            out _, cancellationToken);
    }

    private static void TrainDescriptor(IFeatureSource features, LayerShape[] layers, Descriptor descriptor, float[] bank,
        int bankSize, CfaTrainingOptions options, StepChunks chunks, bool fused, int? projectionRank, Device device,
        IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        if (options.Epochs == 0)
            return;
        using var scope = NewDisposeScope();
        int k = options.NumNearestNeighbors + options.NumHardNegativeFeatures;
        var cpu = fused
            ? new CfaCpuStep(descriptor, bank, bankSize, options, projectionRank ?? MemoryBankScorer.ProjectionRankFor(bankSize, descriptor.OutChannels))
            : null;
        Tensor? bankT = null, kernel = null, norms = null;
        if (cpu is null)
        {
            bankT = CfaTensors.FromArray(bank, new long[] { bankSize, descriptor.OutChannels }).to(device);
            kernel = bankT.Mul(-2).reshape(bankSize, descriptor.OutChannels, 1, 1);
            norms = bankT.Square().sum(1);
        }
        using var optimizer = TorchAdam.AdamW(descriptor.Parameters(), options.LearningRate, options.WeightDecay, amsgrad: true);

        int count = features.Count;
        var order = Enumerable.Range(0, count).ToArray();
        var random = new Random(options.Seed);
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            random.Shuffle(order);
            double lossSum = 0;
            int steps = 0;
            for (int start = 0; start < count; start += options.BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = Math.Min(options.BatchSize, count - start);
                optimizer.ZeroGrad();
                cpu?.Begin();
                for (int offset = 0; offset < n; offset += chunks.ImagesPerChunk)
                {
                    int m = Math.Min(chunks.ImagesPerChunk, n - offset);
                    using var chunk = NewDisposeScope();
                    var maps = LoadBatch(features, layers, order.AsSpan(start + offset, m).ToArray(), device, checkFinite: false);
                    // The step's loss is a mean over its images; each chunk adds its share, and the gradients add up.
                    float share = (float)m / n;
                    if (cpu is not null)
                    {
                        lossSum += cpu.AddChunk(maps, share);
                        continue;
                    }
                    var target = descriptor.Forward(maps);
                    // The loss depends on the features only through each patch's k nearest distances: their gradient
                    // is taken on the k values and carried to the features in closed form (see MemoryBank.FeatureGradient).
                    var (nearest, indices) = MemoryBank.Nearest(target, kernel!, norms!, k, chunks.EntriesPerChunk);
                    nearest.requires_grad_(true);
                    var loss = CfaLoss.FromNearest(nearest, 1, options.NumNearestNeighbors, options.NumHardNegativeFeatures, options.Radius).Mul(share);
                    loss.backward();
                    target.backward(new[] { MemoryBank.FeatureGradient(target, nearest.grad!, indices, bankT!) });
                    lossSum += loss.item<float>();
                }
                cpu?.ApplyGradients();
                optimizer.Step();
                steps++;
            }
            progress?.Report(new TrainingProgress("training", epoch + 1, options.Epochs, lossSum / steps));
        }
    }

    private static Tensor[] LoadBatch(IFeatureSource features, LayerShape[] layers, int[] indices, Device device, bool checkFinite)
    {
        var maps = new Tensor[layers.Length];
        for (int l = 0; l < layers.Length; l++)
        {
            var shape = layers[l];
            var t = empty(new long[] { indices.Length, shape.Channels, shape.Height, shape.Width }, ScalarType.Float32);
            var span = CfaTensors.Span(t);
            for (int i = 0; i < indices.Length; i++)
            {
                var slot = span.Slice(i * shape.Size, shape.Size);
                features.Read(indices[i], l, slot);
                if (checkFinite)
                    FeatureChecks.EnsureFinite(slot, indices[i], l);
            }
            maps[l] = device.type == DeviceType.CPU ? t : t.to(device);
        }
        return maps;
    }

    /// <summary>How a training step is cut: images per chunk, and bank entries ranked per distance convolution.</summary>
    private readonly record struct StepChunks(int ImagesPerChunk, long EntriesPerChunk)
    {
        /// <summary>Chunks whose distances (and feature maps of <paramref name="channels"/>) take about <paramref name="bytes"/>; a bank size of 0: no distances.</summary>
        public static StepChunks For(long bytes, int patches, int bankSize, int channels)
        {
            long perEntryColumn = (long)patches * sizeof(float);
            long entries = Math.Clamp(bytes / perEntryColumn, 1, Math.Max(1, bankSize));
            long images = Math.Max(1, bytes / (perEntryColumn * Math.Max(entries, channels)));
            return new StepChunks((int)Math.Min(images, int.MaxValue), entries);
        }
    }
}
