namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// The backbone of a fitted detector, shared by the transformer, its <see cref="ImageAnomalyTransformerBase.WithThreshold"/>
/// copies and every cursor and prediction engine scoring with them. Runs hold the ONNX Runtime session while they use it;
/// <see cref="Unload"/> closes the session once no run holds it, and the next run opens a new one from the same model.
/// </summary>
/// <remarks>
/// Design: ML.NET's <c>PredictionEngine</c> disposes the transformer it was made from when it is itself disposed
/// (<c>PredictionEngineOptions.OwnsTransformer</c> is true by default), so serving a model with one engine per thread, or
/// from a pool that drops engines, disposes a model that other engines, <c>Transform</c> cursors and the application still
/// use. Disposing therefore cannot end the model: it only unloads the session, which is never closed during a run (runs
/// are counted under a lock, each holding a <see cref="Lease"/>) and is opened again when the model is next used. The
/// metadata (<see cref="Info"/>) stays readable throughout.
/// </remarks>
internal sealed class SharedBackbone
{
    private readonly object _gate = new();
    private OnnxBackbone _backbone;
    private bool _open = true;
    private bool _unloadRequested;
    private int _runs;

    /// <summary>Shares <paramref name="backbone"/>, an open backbone that this object now owns.</summary>
    public SharedBackbone(OnnxBackbone backbone) => _backbone = backbone;

    /// <summary>
    /// The backbone for its metadata only (model bytes, layers, description, resolved tensors); its session may be closed.
    /// </summary>
    public OnnxBackbone Info => _backbone;

    /// <summary>An open backbone, which stays open until the returned lease is disposed.</summary>
    public Lease Acquire()
    {
        lock (_gate)
        {
            if (!_open)
            {
                _backbone = _backbone.Reopen();
                _open = true;
            }
            _runs++;
            return new Lease(this, _backbone);
        }
    }

    private void Release()
    {
        lock (_gate)
        {
            if (--_runs == 0 && _unloadRequested)
                Close();
        }
    }

    /// <summary>Closes the session now, or when the leases holding it are disposed; a later <see cref="Acquire"/> opens a new one.</summary>
    public void Unload()
    {
        lock (_gate)
        {
            if (!_open)
                return;
            if (_runs == 0)
                Close();
            else
                _unloadRequested = true;
        }
    }

    private void Close()
    {
        _backbone.Dispose();
        _open = false;
        _unloadRequested = false;
    }

    /// <summary>A run's hold on the open backbone; dispose it once, when the run is done.</summary>
    public readonly struct Lease(SharedBackbone owner, OnnxBackbone backbone) : IDisposable
    {
        /// <summary>The open backbone.</summary>
        public OnnxBackbone Backbone => backbone;

        /// <inheritdoc />
        public void Dispose() => owner.Release();
    }
}
