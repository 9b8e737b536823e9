using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Anomaly.Vision.Training;

/// <summary>
/// Finds, for every patch feature, the k smallest squared euclidean distances to a fixed memory bank and the
/// entries they belong to: CFA's scoring and, with the entries, its training step.
/// </summary>
/// <remarks>
/// <para>
/// The distance is expanded as d(p, m) = |f_p|² + |b_m|² − 2·f_p·b_m. The dot products are computed in
/// register tiles (6 patches × 64 bank entries with 512-bit vectors, 6 × 16 with 256-bit vectors) and the
/// k smallest values of every tile are merged into a small sorted buffer per patch right away, so the
/// patches × bank distance matrix is never materialised: only tile-sized scratch is used. Blocks of up to
/// 192 patches run in parallel; each block streams the packed bank panel by panel (the next panel is
/// prefetched into L2) and uses every panel for all of its tiles before moving on.
/// </para>
/// <para>
/// The bank is packed once, in the constructor, into panels of <c>W</c> consecutive entries laid out
/// channel by channel (<c>[M/W][C][W]</c>), so that one vector load per channel yields <c>W</c>/16 or
/// <c>W</c>/8 bank entries; the squared norms are precomputed. Padding entries get an infinite norm and
/// are never selected.
/// </para>
/// <para>
/// Everything is fp32, with one rounding order for every bank entry, so the k kept are the k smallest of the
/// fp32 distances (ties: the lower entry wins, as the scan visits entries in ascending order and only a strictly
/// smaller value displaces a kept one).
/// </para>
/// <para>
/// Most entries need not be scanned at all. For a large bank (<see cref="ProjectionRankFor"/>) every patch and entry
/// also has a reduction to r + 1 = 17 values (<see cref="BankProjection"/>) whose squared distance is a lower bound
/// on theirs; on CFA's features a patch's k nearest lie among a few dozen entries whose bound is small. Per tile of
/// 6 patches the bound is computed for every entry (the same register-tile kernel over 17 channels instead of C);
/// the exact values of the 16-entry groups holding each patch's k smallest bounds give τ, an upper limit on its
/// k-th distance; then every group holding an entry whose bound, less a rounding slack, is not above τ is computed
/// exactly, with the same per-entry arithmetic as the full scan (the bank is then packed in panels of 16, so that a
/// group is one contiguous block rather than a cache line per channel), and merged in ascending entry order. An entry
/// skipped is certainly farther than the k kept, so the results are the full scan's bit for bit (tests compare
/// them); a patch far from the whole bank (an anomaly) merely has more groups computed.
/// </para>
/// <para>Instances are immutable after construction and <see cref="Nearest"/> is thread-safe.</para>
/// </remarks>
internal sealed class MemoryBankScorer
{
    /// <summary>Patch rows per micro-kernel tile.</summary>
    internal const int Rows = 6;

    /// <summary>
    /// Most micro-kernel tiles (of <see cref="Rows"/> patches) per parallel work item: every bank panel fetched
    /// from L3 serves this many tiles, while the block's packed features still fit L2 next to the panel.
    /// </summary>
    private const int GroupsPerBlock = 32;

    private const int BlockPatches = Rows * GroupsPerBlock;

    /// <summary>
    /// Channels per pass over a bank panel: every tile of a block uses the same panel slice before the next
    /// slice is read, which keeps the slice in the inner caches (448 channels take two passes).
    /// </summary>
    internal const int DefaultDepthBlock = 224;

    private readonly int _depthBlock;

    private readonly float[] _packed;     // pinned: [M/_packedWidth][channels][_packedWidth], starting at _packedOffset (64-byte aligned)
    private readonly int _packedOffset;
    private readonly float[] _norms;      // pinned: [panels * _width], +∞ for padding, starting at _normsOffset
    private readonly int _normsOffset;
    private readonly int _width;          // entries per panel of the full scan and of the bound
    private readonly int _panels;
    private readonly int _packedWidth;    // entries per panel of _packed: _width, or GroupWidth with the bound
    private readonly Bound? _bound;

    /// <summary>Entries per exactly computed group in the pruned scan: a 512-bit vector, or a 256-bit panel.</summary>
    private const int GroupWidth = 16;

    /// <summary>
    /// The bank's reductions (<see cref="BankProjection"/>), packed like the bank into panels <c>[M/W][r + 1][W]</c>, and
    /// per entry |R(b)|² minus the entry's share of the rounding slack (+∞ for padding).
    /// </summary>
    private sealed class Bound
    {
        public readonly BankProjection Projection;
        public readonly float[] Packed;   // pinned, from PackedOffset (64-byte aligned)
        public readonly int PackedOffset;
        public readonly float[] Norms;    // pinned, from NormsOffset
        public readonly int NormsOffset;

        /// <summary>
        /// ε of the slack ε·(|f|² + |f − μ|²) + ε·(|b|² + |b − μ|²) allowed between the fp32 distance and the fp32 bound:
        /// the distance's dot product of C terms errs by at most about C·u·(|f|² + |b|²) (u = 2⁻²⁴), the bound's by
        /// about (r + 1 + a few)·u·(|f − μ|² + |b − μ|²); ε doubles both.
        /// </summary>
        public readonly double SlackScale;

        /// <summary>Reduces and packs the bank; <paramref name="bankNorms"/> are the entries' squared norms (the full scan's).</summary>
        public Bound(BankProjection projection, float[] bank, ReadOnlySpan<float> bankNorms, int bankSize, int channels, int width, int panels)
        {
            Projection = projection;
            int dims = projection.Dimensions;
            SlackScale = 2.0 * (channels + 2 * dims + 8) / (1 << 24);
            Packed = GC.AllocateArray<float>(panels * dims * width + 16, pinned: true);
            PackedOffset = AlignmentOffset(Packed);
            Norms = GC.AllocateArray<float>(panels * width + 16, pinned: true);
            NormsOffset = AlignmentOffset(Norms);
            var norms = Norms.AsSpan(NormsOffset, panels * width);
            norms.Fill(float.PositiveInfinity);
            var reductions = new float[bankSize * dims];
            var centredNorms = new double[bankSize];
            projection.Reduce(bank, bankSize, reductions, centredNorms);
            for (int m = 0; m < bankSize; m++)
            {
                var reduced = reductions.AsSpan(m * dims, dims);
                double reducedNorm = 0;
                foreach (float v in reduced)
                    reducedNorm += (double)v * v;
                norms[m] = (float)(reducedNorm - SlackScale * (bankNorms[m] + centredNorms[m]));
                int panel = m / width, lane = m % width;
                for (int j = 0; j < dims; j++)
                    Packed[PackedOffset + (panel * dims + j) * width + lane] = reduced[j];
            }
        }
    }

    /// <summary>Creates a scorer over <paramref name="bank"/>, using 512-bit vectors when the hardware accelerates them.</summary>
    /// <param name="bank">The memory bank, patch-major: <paramref name="bankSize"/> rows of <paramref name="channels"/> values.</param>
    /// <param name="bankSize">Number of bank entries M.</param>
    /// <param name="channels">Number of channels C of every entry.</param>
    public MemoryBankScorer(float[] bank, int bankSize, int channels)
        : this(bank, bankSize, channels, Vector512.IsHardwareAccelerated, DefaultDepthBlock, ProjectionRankFor(bankSize, channels))
    {
    }

    /// <summary>Principal directions of the bound when the bank is large enough for it to pay off.</summary>
    internal const int DefaultProjectionRank = 16;

    /// <summary>
    /// <see cref="DefaultProjectionRank"/> where the bound's scan (r + 1 channels for every entry) costs a small part
    /// of the exact one (C channels) and the bank fills many panels; otherwise 0, the exact scan of every entry.
    /// </summary>
    internal static int ProjectionRankFor(int bankSize, int channels) =>
        channels >= 4 * (DefaultProjectionRank + 1) && bankSize >= 512 ? DefaultProjectionRank : 0;

    /// <summary>Creates a scorer with an explicit choice of the vector width (both paths give the same results).</summary>
    /// <param name="bank">The memory bank, patch-major: <paramref name="bankSize"/> rows of <paramref name="channels"/> values.</param>
    /// <param name="bankSize">Number of bank entries M.</param>
    /// <param name="channels">Number of channels C of every entry.</param>
    /// <param name="useVector512">True for the 512-bit kernel, false for the 256-bit kernel.</param>
    /// <param name="depthBlock">Channels per pass over a bank panel (results do not depend on it).</param>
    /// <param name="projectionRank">Principal directions of the lower bound that skips entries (0: every entry is
    /// scanned exactly; results do not depend on it).</param>
    internal MemoryBankScorer(float[] bank, int bankSize, int channels, bool useVector512, int depthBlock, int projectionRank)
    {
        if (depthBlock <= 0)
            throw new ArgumentOutOfRangeException(nameof(depthBlock), depthBlock, "The depth block must be positive.");
        _depthBlock = depthBlock;
        ArgumentNullException.ThrowIfNull(bank);
        if (bankSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(bankSize), bankSize, "The memory bank must hold at least one entry.");
        if (channels <= 0)
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "The number of channels must be positive.");
        if ((long)bankSize * channels != bank.LongLength)
            throw new ArgumentException(
                $"The memory bank holds {bank.LongLength} values but bankSize × channels = {bankSize} × {channels} = {(long)bankSize * channels}.",
                nameof(bank));

        BankSize = bankSize;
        Channels = channels;
        UsesVector512 = useVector512;
        _width = useVector512 ? 64 : 16;
        _panels = (bankSize + _width - 1) / _width;

        long packedLength = (long)_panels * channels * _width;
        if (packedLength > Array.MaxLength - 16)
            throw new ArgumentException("The memory bank is too large to pack.", nameof(bank));

        ArgumentOutOfRangeException.ThrowIfNegative(projectionRank);
        bool bounded = projectionRank > 0 && bank.All(float.IsFinite);
        // With the bound, entries are read one 16-entry group at a time: a group packed on its own is one contiguous
        // block, where a group of a wider panel would take a cache line per channel.
        _packedWidth = bounded ? GroupWidth : _width;
        _packed = GC.AllocateArray<float>((int)packedLength + 16, pinned: true);
        _packedOffset = AlignmentOffset(_packed);
        _norms = GC.AllocateArray<float>(_panels * _width + 16, pinned: true);
        _normsOffset = AlignmentOffset(_norms);

        PackBank(bank, bankSize, channels, _packedWidth, _packed.AsSpan(_packedOffset, (int)packedLength), _norms.AsSpan(_normsOffset, _panels * _width));

        if (bounded)
            _bound = new Bound(BankProjection.Fit(bank, bankSize, channels, Math.Min(projectionRank, channels)), bank,
                _norms.AsSpan(_normsOffset, bankSize), bankSize, channels, _width, _panels);
    }

    /// <summary>Writes the bank as panels <c>[M/W][C][W]</c> (zero padding) and the squared norms (+∞ for padding).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBank(float[] bank, int bankSize, int channels, int width, Span<float> packed, Span<float> norms)
    {
        norms.Fill(float.PositiveInfinity);
        for (int m = 0; m < bankSize; m++)
            norms[m] = SquaredNorm(bank.AsSpan(m * channels, channels));

        for (int panel0 = 0; panel0 < bankSize; panel0 += width)
        {
            int lanes = Math.Min(width, bankSize - panel0);
            Span<float> dst = packed.Slice(panel0 * channels, channels * width);
            dst.Clear();
            for (int lane = 0; lane < lanes; lane++)
            {
                ReadOnlySpan<float> entry = bank.AsSpan((panel0 + lane) * channels, channels);
                for (int c = 0; c < channels; c++)
                    dst[c * width + lane] = entry[c];
            }
        }
    }

    /// <summary>Number of bank entries M.</summary>
    public int BankSize { get; }

    /// <summary>Number of channels C.</summary>
    public int Channels { get; }

    /// <summary>Whether the 512-bit kernel is used.</summary>
    internal bool UsesVector512 { get; }

    /// <summary>
    /// Of the last <see cref="Nearest"/> call (not meaningful while calls overlap): the fraction of (tile, 16-entry group)
    /// pairs computed exactly; 1 without the bound.
    /// </summary>
    internal double LastScanExactFraction => _scannedGroups == 0 ? 1 : (double)_exactGroups / _scannedGroups;

    private long _exactGroups;
    private long _scannedGroups;

    /// <summary>
    /// Computes the <paramref name="k"/> smallest squared euclidean distances from every patch to the bank, ascending.
    /// Tiny negative values caused by rounding are clamped to 0.
    /// </summary>
    /// <param name="features">Patch features, patch-major: <paramref name="patches"/> rows of <see cref="Channels"/> values.</param>
    /// <param name="patches">Number of patches.</param>
    /// <param name="k">Number of nearest distances per patch, 1 ≤ k ≤ <see cref="BankSize"/>.</param>
    /// <param name="distances">Receives <paramref name="patches"/> rows of <paramref name="k"/> distances, ascending.</param>
    public void NearestSquaredDistances(ReadOnlySpan<float> features, int patches, int k, Span<float> distances) =>
        Nearest(features, patches, k, distances, Span<int>.Empty);

    /// <summary>
    /// Computes the <paramref name="k"/> smallest squared euclidean distances from every patch to the bank, ascending,
    /// and, when <paramref name="entries"/> is not empty, the bank entry of each. Tiny negative values caused by
    /// rounding are clamped to 0.
    /// </summary>
    /// <param name="features">Patch features, patch-major: <paramref name="patches"/> rows of <see cref="Channels"/> values.</param>
    /// <param name="patches">Number of patches.</param>
    /// <param name="k">Number of nearest distances per patch, 1 ≤ k ≤ <see cref="BankSize"/>.</param>
    /// <param name="distances">Receives <paramref name="patches"/> rows of <paramref name="k"/> distances, ascending.</param>
    /// <param name="entries">Empty, or receives <paramref name="patches"/> rows of <paramref name="k"/> bank entry indices, matching <paramref name="distances"/>.</param>
    public unsafe void Nearest(ReadOnlySpan<float> features, int patches, int k, Span<float> distances, Span<int> entries)
    {
        if (patches < 0)
            throw new ArgumentOutOfRangeException(nameof(patches), patches, "The number of patches must not be negative.");
        if (k < 1 || k > BankSize)
            throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be between 1 and the bank size {BankSize}.");
        if (features.Length < (long)patches * Channels)
            throw new ArgumentException(
                $"The features hold {features.Length} values, fewer than patches × channels = {patches} × {Channels}.", nameof(features));
        if (distances.Length < (long)patches * k)
            throw new ArgumentException(
                $"The destination holds {distances.Length} values, fewer than patches × k = {patches} × {k}.", nameof(distances));
        if (!entries.IsEmpty && entries.Length < (long)patches * k)
            throw new ArgumentException(
                $"The entry destination holds {entries.Length} values, fewer than patches × k = {patches} × {k}.", nameof(entries));
        _exactGroups = _scannedGroups = 0;
        if (patches == 0)
            return;

        // Equal blocks, a multiple of the thread count where possible, so that the threads finish together.
        int totalGroups = (patches + Rows - 1) / Rows;
        int threads = Math.Max(1, Environment.ProcessorCount);
        int blocks = threads * ((totalGroups + threads * GroupsPerBlock - 1) / (threads * GroupsPerBlock));
        blocks = Math.Min(blocks, totalGroups);
        fixed (float* featuresPtr = features)
        fixed (float* distancesPtr = distances)
        fixed (int* entriesPtr = entries)
        {
            nint f = (nint)featuresPtr, d = (nint)distancesPtr, e = (nint)entriesPtr;
            if (blocks == 1)
            {
                var scratch = new Scratch(Channels, _width, k, _panels, _bound?.Projection);
                ProcessBlock((float*)f, 0, patches, k, (float*)d, (int*)e, scratch);
            }
            else
            {
                Parallel.For(
                    0,
                    blocks,
                    new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                    () => new Scratch(Channels, _width, k, _panels, _bound?.Projection),
                    (block, _, scratch) =>
                    {
                        int first = (int)((long)totalGroups * block / blocks) * Rows;
                        int end = Math.Min(patches, (int)((long)totalGroups * (block + 1) / blocks) * Rows);
                        ProcessBlock((float*)f, first, end - first, k, (float*)d, (int*)e, scratch);
                        return scratch;
                    },
                    _ => { });
            }
        }
    }

    /// <summary>Per-worker scratch: packed features of one block, the block's top-k buffers and its tiles; for the pruned scan, its buffers too.</summary>
    private sealed class Scratch
    {
        public readonly float[] PackedFeatures;
        public readonly float[] Best;
        public readonly int[] BestEntries;
        public readonly float[] FeatureNorms;
        public readonly float[] Tile;

        // The pruned scan's: the block's reductions, their squared norms and slack; one tile's bounds ([panels][6][W]),
        // its exact groups ([M/16][6][16]), which groups are wanted, which computed and which to compute next; the candidates of its patches.
        public readonly float[] PackedReductions = [];
        public readonly float[] ReducedNorms = [];
        public readonly float[] Slack = [];
        public readonly float[] Reductions = [];
        public readonly double[] CentredNorms = [];
        public readonly float[] Bounds = [];
        public readonly float[] Groups = [];
        public readonly ulong[] Wanted = [];
        public readonly ulong[] Computed = [];
        public readonly int[] FreshGroups = [];
        public readonly float[] Candidates;
        public readonly int[] CandidateEntries;
        public readonly float[] Thresholds = new float[Rows];

        public Scratch(int channels, int width, int k, int panels, BankProjection? projection)
        {
            PackedFeatures = GC.AllocateUninitializedArray<float>(GroupsPerBlock * channels * Rows, pinned: true);
            Best = new float[BlockPatches * k];
            BestEntries = new int[BlockPatches * k];
            FeatureNorms = new float[BlockPatches];
            Tile = GC.AllocateUninitializedArray<float>(GroupsPerBlock * Rows * width + 16, pinned: true);
            Candidates = new float[Rows * k];
            CandidateEntries = new int[Rows * k];
            if (projection is null)
                return;
            int entryGroups = panels * width / GroupWidth;
            PackedReductions = GC.AllocateUninitializedArray<float>(GroupsPerBlock * projection.Dimensions * Rows, pinned: true);
            ReducedNorms = new float[BlockPatches];
            Slack = new float[BlockPatches];
            Reductions = new float[BlockPatches * projection.Dimensions];
            CentredNorms = new double[BlockPatches];
            Bounds = GC.AllocateUninitializedArray<float>(panels * Rows * width + 16, pinned: true);
            Groups = GC.AllocateUninitializedArray<float>(entryGroups * Rows * GroupWidth + 16, pinned: true);
            Wanted = new ulong[(entryGroups + 63) / 64];
            Computed = new ulong[(entryGroups + 63) / 64];
            FreshGroups = new int[entryGroups];
        }
    }

    /// <summary>Scores patches [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>), count ≤ <see cref="BlockPatches"/>; <paramref name="entries"/> may be null.</summary>
    private unsafe void ProcessBlock(float* features, int first, int count, int k, float* distances, int* entries, Scratch scratch)
    {
        if (_bound is not null)
        {
            ProcessBlockPruned(features, first, count, k, distances, entries, scratch, _bound);
            return;
        }
        int channels = Channels;
        int groups = (count + Rows - 1) / Rows;

        fixed (float* packedFeatures = scratch.PackedFeatures)
        fixed (float* best = scratch.Best)
        fixed (int* bestEntries = scratch.BestEntries)
        fixed (float* featureNorms = scratch.FeatureNorms)
        fixed (float* tileBase = scratch.Tile)
        fixed (float* packedBank = _packed)
        fixed (float* normsBase = _norms)
        {
            float* tiles = Align(tileBase);
            float* bank = packedBank + _packedOffset;
            float* bankNorms = normsBase + _normsOffset;

            PackFeatures(features + (long)first * channels, count, groups, channels, packedFeatures, featureNorms);
            new Span<float>(best, count * k).Fill(float.PositiveInfinity);

            int panelFloats = channels * _width;
            int passes = (channels + _depthBlock - 1) / _depthBlock;
            int calls = passes * groups;
            for (int panel = 0; panel < _panels; panel++)
            {
                float* b = bank + (long)panel * panelFloats;
                float* bn = bankNorms + panel * _width;
                // The next panel is fetched towards L2 piece by piece while this one is in use.
                float* next = panel + 1 < _panels ? b + panelFloats : null;
                int call = 0;
                for (int c0 = 0; c0 < channels; c0 += _depthBlock)
                {
                    int depth = Math.Min(_depthBlock, channels - c0);
                    bool firstPass = c0 == 0, lastPass = c0 + depth == channels;
                    for (int g = 0; g < groups; g++, call++)
                    {
                        if (next != null && Sse.IsSupported)
                        {
                            int from = (int)((long)panelFloats * call / calls) & ~15;
                            int to = (int)((long)panelFloats * (call + 1) / calls);
                            for (int i = from; i < to; i += 16)
                                Sse.Prefetch1(next + i);
                        }

                        float* a = packedFeatures + g * channels * Rows + c0 * Rows;
                        float* tile = tiles + g * Rows * _width;
                        if (UsesVector512)
                            Kernel512(a, b + c0 * _width, depth, bn, tile, firstPass, lastPass);
                        else
                            Kernel256(a, b + c0 * _width, depth, bn, tile, firstPass, lastPass);
                        if (lastPass)
                        {
                            int rows = Math.Min(Rows, count - g * Rows);
                            if (UsesVector512)
                                Select512(tile, rows, best + g * Rows * k, bestEntries + g * Rows * k, k, panel * _width);
                            else
                                Select256(tile, rows, best + g * Rows * k, bestEntries + g * Rows * k, k, panel * _width);
                        }
                    }
                }
            }

            WriteNearest(first, count, k, best, bestEntries, featureNorms, distances, entries);
        }
    }

    /// <summary>
    /// The pruned scan of a block. Per tile of 6 patches: the bound for every entry; the exact values of the 16-entry
    /// groups holding each patch's k entries of smallest bound, which give an upper limit τ on its k-th distance; then,
    /// in ascending entry order, every group holding an entry whose bound (less the slack) does not exceed τ, merged
    /// exactly as the full scan merges them. An entry skipped has a distance above τ, so the k kept are the full scan's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void ProcessBlockPruned(float* features, int first, int count, int k, float* distances, int* entries, Scratch scratch, Bound bound)
    {
        int channels = Channels;
        int dims = bound.Projection.Dimensions;
        int groups = (count + Rows - 1) / Rows;
        Span<float> lanes = stackalloc float[Vector256<float>.Count];
        Span<Vector256<float>> minima = stackalloc Vector256<float>[Rows];
        Span<float> starts = stackalloc float[Rows];

        fixed (float* packedFeatures = scratch.PackedFeatures)
        fixed (float* best = scratch.Best)
        fixed (int* bestEntries = scratch.BestEntries)
        fixed (float* featureNorms = scratch.FeatureNorms)
        fixed (float* packedReductions = scratch.PackedReductions)
        fixed (float* reducedNorms = scratch.ReducedNorms)
        fixed (float* slack = scratch.Slack)
        fixed (float* boundsBase = scratch.Bounds)
        fixed (float* groupsBase = scratch.Groups)
        fixed (float* candidates = scratch.Candidates)
        fixed (int* candidateEntries = scratch.CandidateEntries)
        fixed (float* thresholds = scratch.Thresholds)
        fixed (float* packedBank = _packed)
        fixed (float* normsBase = _norms)
        fixed (float* reducedBankBase = bound.Packed)
        fixed (float* reducedBankNormsBase = bound.Norms)
        {
            float* bounds = Align(boundsBase);
            float* exact = Align(groupsBase);
            float* bank = packedBank + _packedOffset;
            float* bankNorms = normsBase + _normsOffset;
            float* reducedBank = reducedBankBase + bound.PackedOffset;
            float* reducedBankNorms = reducedBankNormsBase + bound.NormsOffset;
            ulong[] wanted = scratch.Wanted, computed = scratch.Computed;
            long exactGroups = 0;

            PackFeatures(features + (long)first * channels, count, groups, channels, packedFeatures, featureNorms);
            new Span<float>(packedReductions, groups * dims * Rows).Clear();
            var block = new ReadOnlySpan<float>(features + (long)first * channels, count * channels);
            bound.Projection.Reduce(block, count, scratch.Reductions, scratch.CentredNorms);
            for (int p = 0; p < count; p++)
            {
                float* destination = packedReductions + (p / Rows) * dims * Rows + p % Rows;
                double reducedNorm = 0;
                for (int j = 0; j < dims; j++)
                {
                    float v = scratch.Reductions[p * dims + j];
                    destination[j * Rows] = v;
                    reducedNorm += (double)v * v;
                }
                reducedNorms[p] = (float)reducedNorm;
                slack[p] = (float)(bound.SlackScale * (featureNorms[p] + scratch.CentredNorms[p]));
            }
            new Span<float>(best, count * k).Fill(float.PositiveInfinity);

            for (int g = 0; g < groups; g++)
            {
                int rows = Math.Min(Rows, count - g * Rows);
                float* a = packedFeatures + g * channels * Rows;

                // The bounds, |R(b)|² − slack_b − 2 R(f)·R(b), of every entry: [panel][row][W]; and per row, the minima
                // of the 8 lanes, taken while the panel's tile is in the inner cache.
                float* reduced = packedReductions + g * dims * Rows;
                minima.Fill(Vector256.Create(float.PositiveInfinity));
                for (int panel = 0; panel < _panels; panel++)
                {
                    float* tile = bounds + panel * Rows * _width;
                    if (UsesVector512)
                        Kernel512(reduced, reducedBank + panel * dims * _width, dims, reducedBankNorms + panel * _width, tile, first: true, last: true);
                    else
                        Kernel256(reduced, reducedBank + panel * dims * _width, dims, reducedBankNorms + panel * _width, tile, first: true, last: true);
                    for (int r = 0; r < rows; r++)
                    {
                        var least = minima[r];
                        for (int j = 0; j < _width; j += Vector256<float>.Count)
                            least = Vector256.Min(least, Vector256.LoadAligned(tile + r * _width + j));
                        minima[r] = least;
                    }
                }

                // Each row's k entries of smallest bound: their groups are computed first, and give τ. The minima of the
                // 8 lanes are 8 entries' bounds, so for k ≤ 8 the k-th smallest of them is at least the row's k-th
                // smallest bound, and a search that starts from it inserts few entries.
                for (int r = 0; r < rows; r++)
                {
                    float start = float.PositiveInfinity;
                    if (k <= Vector256<float>.Count)
                    {
                        minima[r].CopyTo(lanes);
                        lanes.Sort();
                        start = MathF.BitIncrement(lanes[k - 1]);
                    }
                    starts[r] = start;
                    new Span<float>(candidates + r * k, k).Fill(start);
                }
                for (int panel = 0; panel < _panels; panel++)
                {
                    for (int r = 0; r < rows; r++)
                    {
                        float* row = bounds + (panel * Rows + r) * _width;
                        if (UsesVector512)
                        {
                            // One test for the panel's 64 entries; the lanes below the row's current k-th are inserted in order.
                            ulong below = LanesBelow512(row, candidates[r * k + k - 1]);
                            if (below != 0)
                                InsertLanes(row, below, candidates + r * k, candidateEntries + r * k, k, panel * _width);
                        }
                        else
                        {
                            Merge16(row, candidates + r * k, candidateEntries + r * k, k, panel * _width);
                        }
                    }
                }
                for (int r = 0; r < rows; r++)
                {
                    for (int i = 0; i < k && candidates[r * k + i] < starts[r]; i++)
                        Mark(wanted, candidateEntries[r * k + i] / GroupWidth);
                }
                ComputeWantedGroups(a, bank, bankNorms, exact, wanted, computed, scratch.FreshGroups);

                for (int r = 0; r < rows; r++)
                {
                    int p = g * Rows + r;
                    new Span<float>(candidates, k).Fill(float.PositiveInfinity);
                    for (int word = 0; word < computed.Length; word++)
                    {
                        for (ulong bits = computed[word]; bits != 0; bits &= bits - 1)
                        {
                            int group = word * 64 + System.Numerics.BitOperations.TrailingZeroCount(bits);
                            Merge16(exact + (group * Rows + r) * GroupWidth, candidates, candidateEntries, k, group * GroupWidth);
                        }
                    }
                    float tau = MathF.Max(0f, candidates[k - 1] + featureNorms[p]);
                    thresholds[r] = tau + slack[p] - reducedNorms[p];
                }

                // Every group with an entry whose bound is not above τ (a NaN bound counts as not above).
                for (int panel = 0; panel < _panels; panel++)
                {
                    for (int r = 0; r < rows; r++)
                    {
                        float* row = bounds + (panel * Rows + r) * _width;
                        if (UsesVector512)
                        {
                            // The panel's 4 groups at once: a group is wanted unless all 16 of its bounds are above.
                            ulong notAbove = ~LanesAbove512(row, thresholds[r]);
                            uint groupsWanted = (notAbove & 0xFFFF) != 0 ? 1u : 0u;
                            groupsWanted |= (notAbove & 0xFFFF_0000) != 0 ? 2u : 0u;
                            groupsWanted |= (notAbove & 0xFFFF_0000_0000) != 0 ? 4u : 0u;
                            groupsWanted |= (notAbove & 0xFFFF_0000_0000_0000) != 0 ? 8u : 0u;
                            int firstGroup = panel * _width / GroupWidth;
                            wanted[firstGroup >> 6] |= (ulong)groupsWanted << (firstGroup & 63);
                            continue;
                        }
                        var threshold = Vector256.Create(thresholds[r]);
                        for (int j = 0; j < _width; j += GroupWidth)
                        {
                            uint above = Vector256.GreaterThan(Vector256.LoadAligned(row + j), threshold).ExtractMostSignificantBits()
                                | (Vector256.GreaterThan(Vector256.LoadAligned(row + j + 8), threshold).ExtractMostSignificantBits() << 8);
                            if (above != 0xFFFF)
                                Mark(wanted, (panel * _width + j) / GroupWidth);
                        }
                    }
                }
                ComputeWantedGroups(a, bank, bankNorms, exact, wanted, computed, scratch.FreshGroups);

                // Merge in ascending entry order, as the full scan does, so that ties keep the lower entry.
                for (int word = 0; word < computed.Length; word++)
                {
                    exactGroups += System.Numerics.BitOperations.PopCount(computed[word]);
                    for (ulong bits = computed[word]; bits != 0; bits &= bits - 1)
                    {
                        int group = word * 64 + System.Numerics.BitOperations.TrailingZeroCount(bits);
                        for (int r = 0; r < rows; r++)
                        {
                            int p = g * Rows + r;
                            Merge16(exact + (group * Rows + r) * GroupWidth, best + p * k, bestEntries + p * k, k, group * GroupWidth);
                        }
                    }
                    computed[word] = 0;
                }
            }

            WriteNearest(first, count, k, best, bestEntries, featureNorms, distances, entries);
            Interlocked.Add(ref _exactGroups, exactGroups);
            Interlocked.Add(ref _scannedGroups, (long)groups * _panels * _width / GroupWidth);
        }
    }

    /// <summary>Bit i set where lane i of the 64 values is below <paramref name="limit"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe ulong LanesBelow512(float* values, float limit)
    {
        var threshold = Vector512.Create(limit);
        return Vector512.LessThan(Vector512.LoadAligned(values), threshold).ExtractMostSignificantBits()
            | (Vector512.LessThan(Vector512.LoadAligned(values + 16), threshold).ExtractMostSignificantBits() << 16)
            | (Vector512.LessThan(Vector512.LoadAligned(values + 32), threshold).ExtractMostSignificantBits() << 32)
            | (Vector512.LessThan(Vector512.LoadAligned(values + 48), threshold).ExtractMostSignificantBits() << 48);
    }

    /// <summary>Bit i set where lane i of the 64 values is above <paramref name="limit"/> (clear for NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe ulong LanesAbove512(float* values, float limit)
    {
        var threshold = Vector512.Create(limit);
        return Vector512.GreaterThan(Vector512.LoadAligned(values), threshold).ExtractMostSignificantBits()
            | (Vector512.GreaterThan(Vector512.LoadAligned(values + 16), threshold).ExtractMostSignificantBits() << 16)
            | (Vector512.GreaterThan(Vector512.LoadAligned(values + 32), threshold).ExtractMostSignificantBits() << 32)
            | (Vector512.GreaterThan(Vector512.LoadAligned(values + 48), threshold).ExtractMostSignificantBits() << 48);
    }

    private static void Mark(ulong[] bits, int index) => bits[index >> 6] |= 1UL << (index & 63);

    /// <summary>Computes the exact values |b|² − 2 f·b of the tile's 6 rows for every wanted group not yet computed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void ComputeWantedGroups(float* a, float* bank, float* bankNorms, float* exact, ulong[] wanted, ulong[] computed, int[] fresh)
    {
        int count = 0;
        for (int word = 0; word < wanted.Length; word++)
        {
            for (ulong bits = wanted[word] & ~computed[word]; bits != 0; bits &= bits - 1)
                fresh[count++] = word * 64 + System.Numerics.BitOperations.TrailingZeroCount(bits);
            computed[word] |= wanted[word];
            wanted[word] = 0;
        }
        int groupFloats = GroupWidth * Channels;
        if (!UsesVector512)
        {
            for (int i = 0; i < count; i++)
            {
                int entry = fresh[i] * GroupWidth;
                Kernel256(a, bank + (long)fresh[i] * groupFloats, Channels, bankNorms + entry, exact + fresh[i] * Rows * GroupWidth, first: true, last: true);
            }
            return;
        }
        // Two groups at a time, so that the patches' values broadcast once per channel serve both; each step also fetches
        // the next two groups' values (a group spans several pages, which the hardware prefetcher would learn anew on each).
        for (int i = 0; i < count; i += 2)
        {
            int first = fresh[i], second = fresh[Math.Min(i + 1, count - 1)];
            float* next = bank + (long)fresh[Math.Min(i + 2, count - 1)] * groupFloats;
            float* nextSecond = bank + (long)fresh[Math.Min(i + 3, count - 1)] * groupFloats;
            GroupPairKernel512(a, bank + (long)first * groupFloats, bank + (long)second * groupFloats, Channels,
                bankNorms + first * GroupWidth, bankNorms + second * GroupWidth,
                exact + first * Rows * GroupWidth, exact + second * Rows * GroupWidth, next, nextSecond);
        }
    }

    /// <summary>Merges 16 values (entries <paramref name="firstEntry"/> on) into an ascending k-smallest buffer, as the full scan's selection does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Merge16(float* values, float* best, int* bestEntries, int k, int firstEntry)
    {
        var threshold = Vector256.Create(best[k - 1]);
        uint mask = Vector256.LessThan(Vector256.Load(values), threshold).ExtractMostSignificantBits()
            | (Vector256.LessThan(Vector256.Load(values + 8), threshold).ExtractMostSignificantBits() << 8);
        if (mask != 0)
            InsertLanes(values, mask, best, bestEntries, k, firstEntry);
    }

    /// <summary>
    /// 6 patches × two groups of 16 bank entries, each packed <c>[C][16]</c> (the same group twice computes it once
    /// more, with the same values): the same per-entry arithmetic as <see cref="Kernel512"/> (one fused multiply-add
    /// chain over the channels, then |b|² − 2·f·b). Each channel's step also prefetches the same channel's lines of the
    /// groups at <paramref name="next"/> and <paramref name="nextSecond"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void GroupPairKernel512(float* a, float* b, float* bSecond, int channels, float* bankNorms, float* bankNormsSecond,
        float* tile, float* tileSecond, float* next, float* nextSecond)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default;
        for (int c = 0; c < channels; c++)
        {
            if (Sse.IsSupported)
            {
                Sse.Prefetch0(next + c * GroupWidth);
                Sse.Prefetch0(nextSecond + c * GroupWidth);
            }
            Vector512<float> bv = Vector512.LoadAligned(b + c * GroupWidth);
            Vector512<float> bw = Vector512.LoadAligned(bSecond + c * GroupWidth);
            Vector512<float> v = Vector512.Create(a[0]);
            c0 = Vector512.FusedMultiplyAdd(v, bv, c0);
            d0 = Vector512.FusedMultiplyAdd(v, bw, d0);
            v = Vector512.Create(a[1]);
            c1 = Vector512.FusedMultiplyAdd(v, bv, c1);
            d1 = Vector512.FusedMultiplyAdd(v, bw, d1);
            v = Vector512.Create(a[2]);
            c2 = Vector512.FusedMultiplyAdd(v, bv, c2);
            d2 = Vector512.FusedMultiplyAdd(v, bw, d2);
            v = Vector512.Create(a[3]);
            c3 = Vector512.FusedMultiplyAdd(v, bv, c3);
            d3 = Vector512.FusedMultiplyAdd(v, bw, d3);
            v = Vector512.Create(a[4]);
            c4 = Vector512.FusedMultiplyAdd(v, bv, c4);
            d4 = Vector512.FusedMultiplyAdd(v, bw, d4);
            v = Vector512.Create(a[5]);
            c5 = Vector512.FusedMultiplyAdd(v, bv, c5);
            d5 = Vector512.FusedMultiplyAdd(v, bw, d5);
            a += Rows;
        }
        Vector512<float> m2 = Vector512.Create(-2f), n = Vector512.LoadAligned(bankNorms), o = Vector512.LoadAligned(bankNormsSecond);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c0, m2, n), tile + 0);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c1, m2, n), tile + 16);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c2, m2, n), tile + 32);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c3, m2, n), tile + 48);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c4, m2, n), tile + 64);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c5, m2, n), tile + 80);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(d0, m2, o), tileSecond + 0);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(d1, m2, o), tileSecond + 16);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(d2, m2, o), tileSecond + 32);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(d3, m2, o), tileSecond + 48);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(d4, m2, o), tileSecond + 64);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(d5, m2, o), tileSecond + 80);
    }

    /// <summary>Writes the block's distances, |f|² added to the kept |b|² − 2 f·b and rounding noise clamped at 0, and their entries.</summary>
    private static unsafe void WriteNearest(int first, int count, int k, float* best, int* bestEntries, float* featureNorms, float* distances, int* entries)
    {
        for (int p = 0; p < count; p++)
        {
            float fn = featureNorms[p];
            float* src = best + p * k;
            float* dst = distances + (long)(first + p) * k;
            for (int j = 0; j < k; j++)
                dst[j] = MathF.Max(0f, src[j] + fn);
            if (entries != null)
                new ReadOnlySpan<int>(bestEntries + p * k, k).CopyTo(new Span<int>(entries + (long)(first + p) * k, k));
        }
    }

    /// <summary>|x|², summed in fp64 (eight partial sums, then their total) and rounded to fp32 once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float SquaredNorm(ReadOnlySpan<float> x)
    {
        Vector256<double> low = default, high = default;
        int c = 0;
        for (; c <= x.Length - Vector256<float>.Count; c += Vector256<float>.Count)
        {
            var values = Vector256.Create(x.Slice(c, Vector256<float>.Count));
            var (lower, upper) = (Vector256.WidenLower(values), Vector256.WidenUpper(values));
            low = Vector256.FusedMultiplyAdd(lower, lower, low);
            high = Vector256.FusedMultiplyAdd(upper, upper, high);
        }
        double norm = Vector256.Sum(low + high);
        for (; c < x.Length; c++)
            norm += (double)x[c] * x[c];
        return (float)norm;
    }

    /// <summary>Packs <paramref name="count"/> patch rows as <c>[groups][C][Rows]</c> (zero rows pad the last group) and computes their squared norms.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void PackFeatures(float* features, int count, int groups, int channels, float* packed, float* norms)
    {
        for (int g = 0; g < groups; g++)
        {
            float* dst = packed + g * channels * Rows;
            for (int r = 0; r < Rows; r++)
            {
                int p = g * Rows + r;
                if (p < count)
                {
                    float* src = features + (long)p * channels;
                    for (int c = 0; c < channels; c++)
                        dst[c * Rows + r] = src[c];
                    norms[p] = SquaredNorm(new ReadOnlySpan<float>(src, channels));
                }
                else
                {
                    for (int c = 0; c < channels; c++)
                        dst[c * Rows + r] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// 6 patches × 64 bank entries: accumulates the dot products over all channels in 24 registers,
    /// then writes |b|² − 2·f·b into <paramref name="tile"/> ([6][64]).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Kernel512(float* a, float* b, int channels, float* bankNorms, float* tile, bool first, bool last)
    {
        Vector512<float> c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23;
        Vector512<float> c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
        if (first)
        {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = default;
            c30 = c31 = c32 = c33 = c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = default;
        }
        else
        {
            c00 = Vector512.LoadAligned(tile + 0); c01 = Vector512.LoadAligned(tile + 16);
            c02 = Vector512.LoadAligned(tile + 32); c03 = Vector512.LoadAligned(tile + 48);
            c10 = Vector512.LoadAligned(tile + 64); c11 = Vector512.LoadAligned(tile + 80);
            c12 = Vector512.LoadAligned(tile + 96); c13 = Vector512.LoadAligned(tile + 112);
            c20 = Vector512.LoadAligned(tile + 128); c21 = Vector512.LoadAligned(tile + 144);
            c22 = Vector512.LoadAligned(tile + 160); c23 = Vector512.LoadAligned(tile + 176);
            c30 = Vector512.LoadAligned(tile + 192); c31 = Vector512.LoadAligned(tile + 208);
            c32 = Vector512.LoadAligned(tile + 224); c33 = Vector512.LoadAligned(tile + 240);
            c40 = Vector512.LoadAligned(tile + 256); c41 = Vector512.LoadAligned(tile + 272);
            c42 = Vector512.LoadAligned(tile + 288); c43 = Vector512.LoadAligned(tile + 304);
            c50 = Vector512.LoadAligned(tile + 320); c51 = Vector512.LoadAligned(tile + 336);
            c52 = Vector512.LoadAligned(tile + 352); c53 = Vector512.LoadAligned(tile + 368);
        }

        for (int c = 0; c < channels; c++)
        {
            Vector512<float> b0 = Vector512.LoadAligned(b);
            Vector512<float> b1 = Vector512.LoadAligned(b + 16);
            Vector512<float> b2 = Vector512.LoadAligned(b + 32);
            Vector512<float> b3 = Vector512.LoadAligned(b + 48);

            Vector512<float> a0 = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(a0, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(a0, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(a0, b2, c02);
            c03 = Vector512.FusedMultiplyAdd(a0, b3, c03);
            Vector512<float> a1 = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(a1, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(a1, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(a1, b2, c12);
            c13 = Vector512.FusedMultiplyAdd(a1, b3, c13);
            Vector512<float> a2 = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(a2, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(a2, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(a2, b2, c22);
            c23 = Vector512.FusedMultiplyAdd(a2, b3, c23);
            Vector512<float> a3 = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(a3, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(a3, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(a3, b2, c32);
            c33 = Vector512.FusedMultiplyAdd(a3, b3, c33);
            Vector512<float> a4 = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(a4, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(a4, b1, c41);
            c42 = Vector512.FusedMultiplyAdd(a4, b2, c42);
            c43 = Vector512.FusedMultiplyAdd(a4, b3, c43);
            Vector512<float> a5 = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(a5, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(a5, b1, c51);
            c52 = Vector512.FusedMultiplyAdd(a5, b2, c52);
            c53 = Vector512.FusedMultiplyAdd(a5, b3, c53);

            a += Rows;
            b += 64;
        }

        Vector512<float> m2, n0, n1, n2, n3;
        if (last)
        {
            m2 = Vector512.Create(-2f);
            n0 = Vector512.LoadAligned(bankNorms);
            n1 = Vector512.LoadAligned(bankNorms + 16);
            n2 = Vector512.LoadAligned(bankNorms + 32);
            n3 = Vector512.LoadAligned(bankNorms + 48);
        }
        else
        {
            // Partial sums: store the dot products unchanged (x · 1 + 0).
            m2 = Vector512<float>.One;
            n0 = n1 = n2 = n3 = default;
        }
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c00, m2, n0), tile + 0);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c01, m2, n1), tile + 16);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c02, m2, n2), tile + 32);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c03, m2, n3), tile + 48);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c10, m2, n0), tile + 64);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c11, m2, n1), tile + 80);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c12, m2, n2), tile + 96);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c13, m2, n3), tile + 112);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c20, m2, n0), tile + 128);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c21, m2, n1), tile + 144);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c22, m2, n2), tile + 160);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c23, m2, n3), tile + 176);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c30, m2, n0), tile + 192);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c31, m2, n1), tile + 208);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c32, m2, n2), tile + 224);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c33, m2, n3), tile + 240);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c40, m2, n0), tile + 256);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c41, m2, n1), tile + 272);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c42, m2, n2), tile + 288);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c43, m2, n3), tile + 304);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c50, m2, n0), tile + 320);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c51, m2, n1), tile + 336);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c52, m2, n2), tile + 352);
        Vector512.StoreAligned(Vector512.FusedMultiplyAdd(c53, m2, n3), tile + 368);
    }

    /// <summary>
    /// 6 patches × 16 bank entries with 256-bit vectors (15 registers live): writes |b|² − 2·f·b into
    /// <paramref name="tile"/> ([6][16]).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Kernel256(float* a, float* b, int channels, float* bankNorms, float* tile, bool first, bool last)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (first)
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = default;
        }
        else
        {
            c00 = Vector256.LoadAligned(tile + 0); c01 = Vector256.LoadAligned(tile + 8);
            c10 = Vector256.LoadAligned(tile + 16); c11 = Vector256.LoadAligned(tile + 24);
            c20 = Vector256.LoadAligned(tile + 32); c21 = Vector256.LoadAligned(tile + 40);
            c30 = Vector256.LoadAligned(tile + 48); c31 = Vector256.LoadAligned(tile + 56);
            c40 = Vector256.LoadAligned(tile + 64); c41 = Vector256.LoadAligned(tile + 72);
            c50 = Vector256.LoadAligned(tile + 80); c51 = Vector256.LoadAligned(tile + 88);
        }

        for (int c = 0; c < channels; c++)
        {
            Vector256<float> b0 = Vector256.LoadAligned(b);
            Vector256<float> b1 = Vector256.LoadAligned(b + 8);

            Vector256<float> a0 = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(a0, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(a0, b1, c01);
            Vector256<float> a1 = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(a1, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(a1, b1, c11);
            Vector256<float> a2 = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(a2, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(a2, b1, c21);
            Vector256<float> a3 = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(a3, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(a3, b1, c31);
            Vector256<float> a4 = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(a4, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(a4, b1, c41);
            Vector256<float> a5 = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(a5, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(a5, b1, c51);

            a += Rows;
            b += 16;
        }

        Vector256<float> m2, n0, n1;
        if (last)
        {
            m2 = Vector256.Create(-2f);
            n0 = Vector256.LoadAligned(bankNorms);
            n1 = Vector256.LoadAligned(bankNorms + 8);
        }
        else
        {
            // Partial sums: store the dot products unchanged (x · 1 + 0).
            m2 = Vector256<float>.One;
            n0 = n1 = default;
        }
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c00, m2, n0), tile + 0);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c01, m2, n1), tile + 8);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c10, m2, n0), tile + 16);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c11, m2, n1), tile + 24);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c20, m2, n0), tile + 32);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c21, m2, n1), tile + 40);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c30, m2, n0), tile + 48);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c31, m2, n1), tile + 56);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c40, m2, n0), tile + 64);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c41, m2, n1), tile + 72);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c50, m2, n0), tile + 80);
        Vector256.StoreAligned(Vector256.FusedMultiplyAdd(c51, m2, n1), tile + 88);
    }

    /// <summary>Merges the rows of a [6][64] tile into the patches' sorted k-smallest buffers.</summary>
    private static unsafe void Select512(float* tile, int rows, float* best, int* bestEntries, int k, int firstEntry)
    {
        for (int r = 0; r < rows; r++, tile += 64, best += k, bestEntries += k)
        {
            Vector512<float> threshold = Vector512.Create(best[k - 1]);
            for (int j = 0; j < 64; j += 16)
            {
                ulong mask = Vector512.LessThan(Vector512.LoadAligned(tile + j), threshold).ExtractMostSignificantBits();
                if (mask != 0)
                    InsertLanes(tile + j, mask, best, bestEntries, k, firstEntry + j);
            }
        }
    }

    /// <summary>Merges the rows of a [6][16] tile into the patches' sorted k-smallest buffers.</summary>
    private static unsafe void Select256(float* tile, int rows, float* best, int* bestEntries, int k, int firstEntry)
    {
        for (int r = 0; r < rows; r++, tile += 16, best += k, bestEntries += k)
        {
            Vector256<float> threshold = Vector256.Create(best[k - 1]);
            uint mask = Vector256.LessThan(Vector256.LoadAligned(tile), threshold).ExtractMostSignificantBits()
                | (Vector256.LessThan(Vector256.LoadAligned(tile + 8), threshold).ExtractMostSignificantBits() << 8);
            if (mask != 0)
                InsertLanes(tile, mask, best, bestEntries, k, firstEntry);
        }
    }

    /// <summary>
    /// Inserts the lanes of <paramref name="values"/> flagged in <paramref name="mask"/> into the ascending buffer, keeping
    /// its k smallest and their entries (lane i is entry <paramref name="firstEntry"/> + i).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static unsafe void InsertLanes(float* values, ulong mask, float* best, int* bestEntries, int k, int firstEntry)
    {
        do
        {
            int lane = System.Numerics.BitOperations.TrailingZeroCount(mask);
            float v = values[lane];
            mask &= mask - 1;
            if (v < best[k - 1])
            {
                int i = k - 1;
                while (i > 0 && best[i - 1] > v)
                {
                    best[i] = best[i - 1];
                    bestEntries[i] = bestEntries[i - 1];
                    i--;
                }
                best[i] = v;
                bestEntries[i] = firstEntry + lane;
            }
        }
        while (mask != 0);
    }

    private static unsafe int AlignmentOffset(float[] pinned)
    {
        fixed (float* p = pinned)
            return (int)((64 - ((nuint)p & 63)) & 63) / sizeof(float);
    }

    private static unsafe float* Align(float* p) => (float*)(((nuint)p + 63) & ~(nuint)63);
}
