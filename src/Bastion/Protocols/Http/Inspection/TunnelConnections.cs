using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Bastion.Gateway;
using Bastion.Hosting;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>The address Kestrel "binds" for decrypted tunnels: no socket, connections are handed in.</summary>
sealed class TunnelEndPoint(string listener) : EndPoint
{
    public override string ToString() => $"inspected-tunnels:{listener}";
}

/// <summary>
/// A Kestrel transport without sockets: each decrypted tunnel that negotiated h2 is handed to Kestrel as a
/// connection, so Kestrel's HTTP/2 does the framing, flow control and HPACK over the tunnel's TLS stream.
/// </summary>
sealed class TunnelConnections : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    readonly Channel<TunnelConnection> _incoming = Channel.CreateUnbounded<TunnelConnection>(new UnboundedChannelOptions { SingleReader = true });

    public bool CanBind(EndPoint endpoint) => endpoint is TunnelEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken ct = default) =>
        ValueTask.FromResult<IConnectionListener>(new Listener(endpoint, _incoming.Reader));

    /// <summary>Hands a connection to Kestrel; completes when Kestrel is done with it.</summary>
    public Task ServeAsync(TunnelConnection c)
    {
        if (!_incoming.Writer.TryWrite(c)) return Task.CompletedTask;
        return c.Done;
    }

    public void Complete() => _incoming.Writer.TryComplete();

    sealed class Listener(EndPoint endpoint, ChannelReader<TunnelConnection> incoming) : IConnectionListener
    {
        public EndPoint EndPoint => endpoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken ct = default)
        {
            try
            {
                if (await incoming.WaitToReadAsync(ct).ConfigureAwait(false) && incoming.TryRead(out var c)) return c;
            }
            catch (OperationCanceledException) { }
            return null;
        }

        public ValueTask UnbindAsync(CancellationToken ct = default) => ValueTask.CompletedTask;
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

/// <summary>One decrypted tunnel as a Kestrel connection: pipes over the client's TLS stream, and what it is for.</summary>
sealed class TunnelConnection : ConnectionContext
{
    readonly Stream _stream;
    readonly CancellationTokenSource _closed = new();
    readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly PipeReader _input;
    readonly PipeWriter _output;

    public TunnelConnection(Stream stream, InspectedOrigin target, ClientConnection conn)
    {
        _stream = stream;
        _input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4096, leaveOpen: true));
        _output = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 16 * 1024, leaveOpen: true));
        Transport = new DuplexPipe(_input, _output);
        ConnectionId = conn.Id;
        RemoteEndPoint = conn.Client;
        LocalEndPoint = conn.Local;
        Features.Set(target);
        Features.Set(conn);
    }

    public Task Done => _done.Task;
    public override string ConnectionId { get; set; }
    public override IFeatureCollection Features { get; } = new FeatureCollection();
    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();
    public override IDuplexPipe Transport { get; set; }
    public override CancellationToken ConnectionClosed { get => _closed.Token; set { } }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        try { _closed.Cancel(); } catch (ObjectDisposedException) { }
        _stream.Dispose();
    }

    public override async ValueTask DisposeAsync()
    {
        await _input.CompleteAsync().ConfigureAwait(false);
        try { await _output.CompleteAsync().ConfigureAwait(false); }
        catch (Exception e) when (e is IOException or ObjectDisposedException) { }
        _closed.Dispose();
        _done.TrySetResult();
    }

    sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }
}
