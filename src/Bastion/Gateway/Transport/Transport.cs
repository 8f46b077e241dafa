using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;

namespace Bastion.Gateway;

/// <summary>Outcome of a mid-session TLS upgrade.</summary>
public readonly record struct TlsUpgrade(bool Ok, int DiscardedBytes, string? Error);

/// <summary>Outcome of opening an upstream transport: the transport, or why not.</summary>
public readonly record struct TransportConnect(Transport? Transport, SocketError Error, string? Message)
{
    public bool Ok => Transport is not null;
}

/// <summary>
/// One side of a connection (the client's or the upstream's): a duplex stream with pipes over it, and the socket
/// under it when there is one (for the socket-to-socket fast path of <see cref="StreamRelay"/>). The stream and
/// the pipes are made on first use, so a connection that is only relayed socket to socket allocates none of them.
/// A TLS upgrade in the middle of a session (STARTTLS, AUTH TLS) replaces <see cref="Stream"/>, <see cref="Input"/>
/// and <see cref="Output"/> with the TLS ones.
/// </summary>
public sealed class Transport : IAsyncDisposable
{
    /// <summary>The pipes' read and segment size unless a protocol asks for other segments (<see cref="OutputBufferSize"/>).</summary>
    public const int DefaultPipeBufferSize = 16 * 1024;
    Stream? _stream;
    readonly IDuplexPipe? _pipe;
    PipeReader? _input;
    PipeWriter? _output;
    int _disposed;

    Transport(Socket? socket, Stream? stream, IDuplexPipe? pipe)
    {
        Socket = socket;
        _stream = stream;
        _pipe = pipe;
    }

    /// <summary>The socket under the stream, when there is one.</summary>
    public Socket? Socket { get; }

    /// <summary>The byte stream: a NetworkStream over <see cref="Socket"/>, the caller's stream, or the SslStream after an upgrade.</summary>
    public Stream Stream => _stream ??= Socket is not null
        ? new NetworkStream(Socket, ownsSocket: false)
        : new DuplexPipeStream(_pipe!);

    /// <summary>Reads from the peer. Protocol code reads here; bytes it leaves unread are the relay's to forward.</summary>
    public PipeReader Input => _input ??= _pipe?.Input
        ?? PipeReader.Create(Stream, new StreamPipeReaderOptions(bufferSize: DefaultPipeBufferSize, minimumReadSize: 4096, leaveOpen: true));

    /// <summary>Writes to the peer (flush to send).</summary>
    public PipeWriter Output => _output ??= _pipe?.Output
        ?? PipeWriter.Create(Stream, new StreamPipeWriterOptions(minimumBufferSize: OutputBufferSize, leaveOpen: true));

    /// <summary>
    /// The size of an <see cref="Output"/> segment (one send each), for pipes made after it is set: bulk senders (SMTP
    /// message data) take more. Reads stay <see cref="DefaultPipeBufferSize"/>: a read's buffer is held while it waits.
    /// </summary>
    public int OutputBufferSize { get; set; } = DefaultPipeBufferSize;

    public SslStream? Tls { get; private set; }

    public bool IsTls => Tls is not null;

    /// <summary>True while nothing but the socket itself was used: the relay may pump socket to socket.</summary>
    internal bool IsPlainSocket => Socket is not null && Tls is null && _pipe is null;

    /// <summary>True when <see cref="Input"/> was created (protocol code has read through the pipe).</summary>
    internal bool HasInputPipe => _input is not null;

    /// <summary>True when <see cref="Output"/> was created.</summary>
    internal bool HasOutputPipe => _output is not null;

    public IPEndPoint? RemoteEndPoint => Socket?.RemoteEndPoint as IPEndPoint;

    public IPEndPoint? LocalEndPoint => Socket?.LocalEndPoint as IPEndPoint;

    public static Transport FromSocket(Socket s) => new(s, null, null);

    /// <summary>A transport over any stream (an SslStream, a test's stream); <paramref name="socket"/> is the one under it, if known.</summary>
    public static Transport FromStream(Stream s, Socket? socket = null) => new(socket, s, null);

    /// <summary>A transport over pipes someone else reads the socket into (Kestrel's connection).</summary>
    public static Transport FromPipe(IDuplexPipe pipe) => new(null, null, pipe);

    /// <summary>
    /// Bytes already read into <see cref="Input"/> and not consumed. Nothing is read from the network for this.
    /// </summary>
    public long Buffered
    {
        get
        {
            if (_input is null || !_input.TryRead(out var r)) return 0;
            long n = r.Buffer.Length;
            _input.AdvanceTo(r.Buffer.Start);
            return n;
        }
    }

    public bool HasBuffered => Buffered > 0;

    /// <summary>Takes whatever <see cref="Input"/> holds (a copy), leaving it empty; empty when nothing was buffered.</summary>
    public ReadOnlyMemory<byte> TakeBuffered()
    {
        if (_input is null || !_input.TryRead(out var r)) return default;
        ReadOnlyMemory<byte> bytes = r.Buffer.IsEmpty ? default : System.Buffers.BuffersExtensions.ToArray(r.Buffer);
        _input.AdvanceTo(r.Buffer.End);
        return bytes;
    }

    /// <summary>
    /// Sends bytes now: straight to the socket while nothing else is in use (handshake replies before a socket relay),
    /// otherwise through <see cref="Output"/> with a flush.
    /// </summary>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        if (IsPlainSocket && _output is null)
        {
            while (!data.IsEmpty)
            {
                int sent = await Socket!.SendAsync(data, SocketFlags.None, ct).ConfigureAwait(false);
                if (sent <= 0) throw new IOException("send made no progress");
                data = data[sent..];
            }
            return;
        }
        await Output.WriteAsync(data, ct).ConfigureAwait(false);
    }

    /// <summary>Server side of STARTTLS / AUTH TLS: the client is about to start a TLS handshake.</summary>
    public ValueTask<TlsUpgrade> UpgradeToServerTlsAsync(SslServerAuthenticationOptions o, TimeSpan timeout, CancellationToken ct) =>
        UpgradeAsync((ssl, token) => ssl.AuthenticateAsServerAsync(o, token), timeout, ct);

    /// <summary>Client side of STARTTLS / AUTH TLS towards an upstream.</summary>
    public ValueTask<TlsUpgrade> UpgradeToClientTlsAsync(SslClientAuthenticationOptions o, TimeSpan timeout, CancellationToken ct) =>
        UpgradeAsync((ssl, token) => ssl.AuthenticateAsClientAsync(o, token), timeout, ct);

    /// <summary>
    /// Pending output is flushed; bytes the peer sent before the handshake and that sit read but unconsumed in
    /// <see cref="Input"/> are discarded and counted (never fed to TLS, never read after it: CVE-2011-0411); then the
    /// handshake runs on the raw stream and the pipes are rebuilt over the TLS stream.
    /// </summary>
    async ValueTask<TlsUpgrade> UpgradeAsync(Func<SslStream, CancellationToken, Task> handshake, TimeSpan timeout, CancellationToken ct)
    {
        if (Tls is not null) return new TlsUpgrade(false, 0, "already TLS");
        if (_output is not null)
        {
            await _output.FlushAsync(ct).ConfigureAwait(false);
            if (_pipe is null) await _output.CompleteAsync().ConfigureAwait(false);
        }
        int discarded = 0;
        if (_input is not null)
        {
            if (_input.TryRead(out var r))
            {
                discarded = (int)Math.Min(int.MaxValue, r.Buffer.Length);
                _input.AdvanceTo(r.Buffer.End);
            }
            if (_pipe is null) await _input.CompleteAsync().ConfigureAwait(false);
        }
        var raw = Stream;
        var ssl = new SslStream(raw, leaveInnerStreamOpen: false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await handshake(ssl, cts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException
            or OperationCanceledException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            _input = null;
            _output = null;
            var why = e is OperationCanceledException && !ct.IsCancellationRequested
                ? $"TLS handshake not done in {timeout.TotalSeconds:0.#}s"
                : $"TLS handshake failed: {Innermost(e)}";
            return new TlsUpgrade(false, discarded, why);
        }
        Tls = ssl;
        _stream = ssl;
        _input = PipeReader.Create(ssl, new StreamPipeReaderOptions(bufferSize: DefaultPipeBufferSize, minimumReadSize: 4096, leaveOpen: true));
        _output = PipeWriter.Create(ssl, new StreamPipeWriterOptions(minimumBufferSize: OutputBufferSize, leaveOpen: true));
        return new TlsUpgrade(true, discarded, null);
    }

    static string Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }

    /// <summary>
    /// Half-close: this side sends nothing more (close_notify on TLS, then a TCP FIN when there is a socket); the
    /// other direction stays open.
    /// </summary>
    public async ValueTask ShutdownSendAsync()
    {
        try
        {
            if (_output is not null) await _output.FlushAsync().ConfigureAwait(false);
            if (Tls is { } tls) await tls.ShutdownAsync().ConfigureAwait(false);
            if (Socket is { } s) s.Shutdown(SocketShutdown.Send);
            else if (_pipe is not null) await _pipe.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or NotSupportedException) { }
    }

    /// <summary>Resolves (an IP literal or localhost needs no DNS) and connects, trying each address in turn.</summary>
    public static async Task<TransportConnect> ConnectAsync(string host, int port, TimeSpan timeout, CancellationToken ct)
    {
        var (addresses, error) = await Connector.ResolveAsync(host, timeout, ct).ConfigureAwait(false);
        if (error != SocketError.Success)
            return new TransportConnect(null, error, error == SocketError.TimedOut ? $"resolving {host} timed out" : $"cannot resolve {host}: {error}");
        return await ConnectAsync(addresses, port, timeout, ct).ConfigureAwait(false);
    }

    public static async Task<TransportConnect> ConnectAsync(IReadOnlyList<IPAddress> addresses, int port, TimeSpan timeout, CancellationToken ct)
    {
        var r = await Connector.ConnectAsync(addresses, port, timeout, ct).ConfigureAwait(false);
        return r.Ok ? new TransportConnect(FromSocket(r.Socket!), SocketError.Success, null) : new TransportConnect(null, r.Error, r.Message);
    }

    /// <summary>Closes at once (a reset if data is unsent): for refusals.</summary>
    public void Abort()
    {
        try { Socket?.Close(0); } catch (ObjectDisposedException) { }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_pipe is null)
        {
            if (_input is not null) await _input.CompleteAsync().ConfigureAwait(false);
            if (_output is not null)
            {
                try { await _output.CompleteAsync().ConfigureAwait(false); }
                catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }
            }
            if (_stream is not null)
            {
                try { await _stream.DisposeAsync().ConfigureAwait(false); }
                catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException) { }
            }
        }
        try { Socket?.Dispose(); } catch (ObjectDisposedException) { }
    }
}

/// <summary>A stream over a duplex pipe (Kestrel's connection), for code that wants a Stream.</summary>
sealed class DuplexPipeStream(IDuplexPipe pipe) : Stream
{
    readonly Stream _in = pipe.Input.AsStream(leaveOpen: true);
    readonly Stream _out = pipe.Output.AsStream(leaveOpen: true);

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => _in.ReadAsync(buffer, ct);
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => _in.ReadAsync(buffer, offset, count, ct);
    public override int Read(byte[] buffer, int offset, int count) => _in.Read(buffer, offset, count);
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) => _out.WriteAsync(buffer, ct);
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => _out.WriteAsync(buffer, offset, count, ct);
    public override void Write(byte[] buffer, int offset, int count) => _out.Write(buffer, offset, count);
    public override Task FlushAsync(CancellationToken ct) => _out.FlushAsync(ct);
    public override void Flush() => _out.Flush();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
