using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Anomaly.Vision.Training;

/// <summary>
/// An <see cref="IFeatureSource"/> that stores the backbone features of a training set once, in memory up to a
/// limit and in a temporary file past it, so that training reads them every epoch without running the backbone again.
/// </summary>
/// <remarks>
/// Images are kept in memory while the stored bytes stay within the memory limit; every image added after the
/// limit is reached is appended to a temporary file, <c>anomaly-vision-features-&lt;guid&gt;.bin</c> in the system's
/// temporary folder (<c>$TMPDIR</c>, <see cref="Path.GetTempPath"/>) unless another folder is given. The file lives
/// no longer than the process: on Linux and macOS its name is removed as soon as it is open (the data stays reachable
/// through the open handle), and on Windows it is opened with <see cref="FileOptions.DeleteOnClose"/>, which the
/// system applies when the process ends; so even a killed process leaves no file behind.
/// <see cref="Read"/> may be called from several threads at once; <see cref="Add"/> may not run concurrently with
/// anything else.
/// </remarks>
public sealed class FeatureStore : IFeatureSource, IDisposable
{
    private readonly LayerShape[] _layers;
    private readonly long[] _layerOffsets;          // element offset of each layer inside one image
    private readonly int _imageElements;
    private readonly int _elementBytes;
    private readonly long _memoryLimitBytes;
    private readonly string _spillDirectory;
    private readonly List<float[]> _float32 = new();
    private readonly List<Half[]> _float16 = new();
    private int _spilledImages;
    private SafeFileHandle? _file;
    private string? _filePath;
    private bool _disposed;

    /// <summary>Creates an empty store for maps of the given layer shapes.</summary>
    /// <param name="layers">Shape of each layer's map for one image.</param>
    /// <param name="precision">How values are kept.</param>
    /// <param name="memoryLimitBytes">Bytes of feature values kept in memory; images past it go to a temporary file. Zero sends every image to the file.</param>
    /// <param name="spillDirectory">Folder of the temporary file; the system's temporary folder when <see langword="null"/>.</param>
    /// <exception cref="ArgumentException">No layers, a non-positive layer dimension, an unknown precision or a negative limit.</exception>
    public FeatureStore(IReadOnlyList<LayerShape> layers, FeatureStorePrecision precision = FeatureStorePrecision.Float32,
        long memoryLimitBytes = 2L << 30, string? spillDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0)
            throw new ArgumentException("At least one layer is needed.", nameof(layers));
        if (precision is not (FeatureStorePrecision.Float32 or FeatureStorePrecision.Float16))
            throw new ArgumentException($"Unknown precision {precision}.", nameof(precision));
        if (memoryLimitBytes < 0)
            throw new ArgumentException($"The memory limit must not be negative (got {memoryLimitBytes}).", nameof(memoryLimitBytes));
        _layers = layers.ToArray();
        _layerOffsets = new long[_layers.Length];
        long total = 0;
        for (int i = 0; i < _layers.Length; i++)
        {
            var s = _layers[i];
            if (s.Channels <= 0 || s.Height <= 0 || s.Width <= 0)
                throw new ArgumentException($"Layer {i} shape {s} has a non-positive dimension.", nameof(layers));
            _layerOffsets[i] = total;
            total += (long)s.Channels * s.Height * s.Width;
        }
        if (total > Array.MaxLength)
            throw new ArgumentException($"One image's maps hold {total} values, more than an array can.", nameof(layers));
        _imageElements = (int)total;
        Precision = precision;
        _elementBytes = precision == FeatureStorePrecision.Float32 ? sizeof(float) : 2;
        _memoryLimitBytes = memoryLimitBytes;
        _spillDirectory = spillDirectory ?? Path.GetTempPath();
    }

    /// <summary>How values are kept.</summary>
    public FeatureStorePrecision Precision { get; }

    /// <inheritdoc />
    public int Count => InMemoryCount + _spilledImages;

    /// <inheritdoc />
    public IReadOnlyList<LayerShape> Layers => _layers;

    /// <summary>Number of images kept in memory (the first ones added).</summary>
    public int InMemoryCount => Precision == FeatureStorePrecision.Float32 ? _float32.Count : _float16.Count;

    /// <summary>Number of images written to the temporary file.</summary>
    public int SpilledCount => _spilledImages;

    /// <summary>Bytes of feature values held in memory.</summary>
    public long MemoryBytes => (long)InMemoryCount * _imageElements * _elementBytes;

    /// <summary>
    /// Path the temporary file was created at, or <see langword="null"/> while nothing was spilled. On Linux and macOS
    /// the name is removed as soon as the file is open, so nothing is found there.
    /// </summary>
    public string? SpillFilePath => _filePath;

    /// <summary>Adds one image's maps, one CHW array per layer; the values are copied.</summary>
    /// <param name="maps">One array per layer, each of that layer's <see cref="LayerShape.Size"/>.</param>
    /// <exception cref="ArgumentException">Wrong number of maps or a map of the wrong length.</exception>
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    public void Add(IReadOnlyList<float[]> maps)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(maps);
        if (maps.Count != _layers.Length)
            throw new ArgumentException($"Expected {_layers.Length} layer maps, got {maps.Count}.", nameof(maps));
        for (int i = 0; i < maps.Count; i++)
        {
            if (maps[i] is null)
                throw new ArgumentException($"Layer {i} map is null.", nameof(maps));
            if (maps[i].Length != _layers[i].Size)
                throw new ArgumentException($"Layer {i} map has {maps[i].Length} values, expected {_layers[i].Size}.", nameof(maps));
        }

        long imageBytes = (long)_imageElements * _elementBytes;
        bool toMemory = _spilledImages == 0 && MemoryBytes + imageBytes <= _memoryLimitBytes;
        if (toMemory)
        {
            if (Precision == FeatureStorePrecision.Float32)
            {
                var image = new float[_imageElements];
                for (int l = 0; l < maps.Count; l++)
                    maps[l].CopyTo(image, (int)_layerOffsets[l]);
                _float32.Add(image);
            }
            else
            {
                var image = new Half[_imageElements];
                for (int l = 0; l < maps.Count; l++)
                    TensorPrimitives.ConvertToHalf(maps[l], image.AsSpan((int)_layerOffsets[l], maps[l].Length));
                _float16.Add(image);
            }
            return;
        }

        EnsureFile();
        long offset = (long)_spilledImages * imageBytes;
        for (int l = 0; l < maps.Count; l++)
        {
            long at = offset + _layerOffsets[l] * _elementBytes;
            if (Precision == FeatureStorePrecision.Float32)
            {
                RandomAccess.Write(_file!, MemoryMarshal.AsBytes(maps[l].AsSpan()), at);
            }
            else
            {
                byte[] buffer = ArrayPool<byte>.Shared.Rent(maps[l].Length * 2);
                try
                {
                    var halves = MemoryMarshal.Cast<byte, Half>(buffer.AsSpan(0, maps[l].Length * 2));
                    TensorPrimitives.ConvertToHalf(maps[l], halves);
                    RandomAccess.Write(_file!, buffer.AsSpan(0, maps[l].Length * 2), at);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }
        _spilledImages++;
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="image"/> or <paramref name="layer"/> is out of range.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than the layer's map.</exception>
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    public void Read(int image, int layer, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(image);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(image, Count);
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, _layers.Length);
        int size = _layers[layer].Size;
        if (destination.Length < size)
            throw new ArgumentException($"Layer {layer} map has {size} values; the destination holds {destination.Length}.", nameof(destination));
        destination = destination[..size];
        int start = (int)_layerOffsets[layer];

        int inMemory = InMemoryCount;
        if (image < inMemory)
        {
            if (Precision == FeatureStorePrecision.Float32)
                _float32[image].AsSpan(start, size).CopyTo(destination);
            else
                TensorPrimitives.ConvertToSingle(_float16[image].AsSpan(start, size), destination);
            return;
        }

        long at = (long)(image - inMemory) * _imageElements * _elementBytes + (long)start * _elementBytes;
        if (Precision == FeatureStorePrecision.Float32)
        {
            ReadExactly(MemoryMarshal.AsBytes(destination), at);
        }
        else
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent(size * 2);
            try
            {
                var bytes = buffer.AsSpan(0, size * 2);
                ReadExactly(bytes, at);
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), destination);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>Releases the stored values and deletes the temporary file.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _float32.Clear();
        _float16.Clear();
        _file?.Dispose();
        _file = null;
        if (_filePath != null)
        {
            try { File.Delete(_filePath); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    private void EnsureFile()
    {
        if (_file != null)
            return;
        Directory.CreateDirectory(_spillDirectory);
        string path = Path.Combine(_spillDirectory, $"anomaly-vision-features-{Guid.NewGuid():N}.bin");
        _file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, FileOptions.DeleteOnClose);
        _filePath = path;
        if (!OperatingSystem.IsWindows())
            File.Delete(path);      // unlinked while open: the data goes with the last handle, even when the process is killed
    }

    private void ReadExactly(Span<byte> destination, long offset)
    {
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(_file!, destination, offset);
            if (n <= 0)
                throw new IOException($"The feature store's temporary file '{_filePath}' ended early at offset {offset}.");
            destination = destination[n..];
            offset += n;
        }
    }
}
