using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision.Internal;

/// <summary>
/// One cancellation token for a Fit that honours both ways of cancelling it: the options' <see cref="CancellationToken"/>
/// and ML.NET's own cancellation of the context (<c>ICancelable.CancelExecution</c>, which flags the context's hosts and
/// which ML.NET code sees through <c>Host.CheckAlive()</c>).
/// </summary>
/// <remarks>
/// ML.NET raises no event when it cancels a host, and the TorchSharp training core knows nothing of ML.NET, so the host's
/// flag is polled every <see cref="PollInterval"/> and turned into the token the training core checks between steps.
/// The poll runs on a thread of its own: a thread-pool timer can wait seconds for a thread while image decoding and
/// training keep the pool busy.
/// </remarks>
internal sealed class HostCancellation : IDisposable
{
    /// <summary>How often the host's cancellation flag is looked at.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);

    private readonly IHost _host;
    private readonly CancellationTokenSource _source;
    private readonly ManualResetEventSlim _stop = new();
    private readonly Thread _poller;

    /// <summary>Links <paramref name="host"/>'s cancellation and <paramref name="token"/> into <see cref="Token"/>.</summary>
    public HostCancellation(IHost host, CancellationToken token)
    {
        _host = host;
        _source = CancellationTokenSource.CreateLinkedTokenSource(token);
        _poller = new Thread(PollUntilStopped) { IsBackground = true, Name = "ML.NET cancellation poll" };
        _poller.Start();
    }

    /// <summary>Cancelled when the user's token is, or within <see cref="PollInterval"/> of ML.NET cancelling the host.</summary>
    public CancellationToken Token => _source.Token;

    /// <summary>Throws <see cref="OperationCanceledException"/> when either side has cancelled.</summary>
    public void ThrowIfCancellationRequested()
    {
        _host.CheckAlive();
        _source.Token.ThrowIfCancellationRequested();
    }

    /// <summary>Stops polling.</summary>
    public void Dispose()
    {
        _stop.Set();
        _poller.Join();
        _stop.Dispose();
        _source.Dispose();
    }

    private void PollUntilStopped()
    {
        while (!_stop.Wait(PollInterval))
        {
            if (_host is ICancelable { IsCanceled: true })
            {
                _source.Cancel();
                return;
            }
        }
    }
}
