using System.Buffers;
using Bastion.Configuration;
using Bastion.Gateway;

namespace Bastion.Protocols.Ftp;

// The server side of the control connection: connect, greeting, AUTH TLS towards the server, commands and replies.
public sealed partial class FtpSession
{
    /// <summary>Longest reply line taken from a server; a whole reply is bounded by <see cref="FtpReply"/>.</summary>
    const int ServerMaxLine = 8192;

    static readonly byte[] Crlf = "\r\n"u8.ToArray();

    Transport? _server;
    LineReader? _serverLines;
    HostPort? _target;
    /// <summary>Connecting and logging in to the server's greeting (and its TLS); fails with <see cref="SessionEnd"/>.</summary>
    Task? _connecting;
    /// <summary>PROT P was accepted by the server: data connections towards it are TLS too.</summary>
    bool _serverProtP;

    /// <summary>The configured upstream (a fixed server or a group); null when the client names the server.</summary>
    readonly StreamUpstreams? _upstreams;
    /// <summary>The group's target this session is on (for least-requests balancing), if any.</summary>
    UpstreamTarget? _upstreamTarget;

    /// <summary>
    /// Starts connecting to <paramref name="named"/> (USER name@host) at the <paramref name="addresses"/> the policy
    /// allowed, or to the configured upstream when null.
    /// </summary>
    void StartConnect(HostPort? named, System.Net.IPAddress[]? addresses = null)
    {
        if (named is not null)
        {
            _target = named;
            _conn.Target = named.ToString();
        }
        _connecting = ConnectAsync(named, addresses);
    }

    async Task ConnectAsync(HostPort? named, System.Net.IPAddress[]? addresses)
    {
        if (named is not null)
        {
            var r = await Transport.ConnectAsync(addresses!, named.Port, _cfg.Limits.ConnectTimeout, Ct).ConfigureAwait(false);
            if (!r.Ok) throw new SessionEnd($"Cannot reach the server {named}: {r.Message ?? r.Error.ToString()}");
            _server = r.Transport!;
        }
        else
        {
            var (transport, target, error) = await _upstreams!.ConnectAsync(_cfg.Limits.ConnectTimeout, Ct).ConfigureAwait(false);
            if (transport is null) throw new SessionEnd($"Cannot reach the server: {error}");
            _server = transport;
            _upstreamTarget = target;
            target!.Begin();
            _target = new HostPort(target.Host, target.Port);
            _conn.Target = _target.ToString();
        }
        if (_server.Socket is { } s) s.NoDelay = true;
        _serverLines = new LineReader(_server.Input, ServerMaxLine);
        await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        if (_reply.Code != 220) throw new SessionEnd($"Server not ready: {_reply.Summary()}");
        if (_s.UpstreamTls != UpstreamTlsMode.Off) await UpstreamTlsAsync(_target!).ConfigureAwait(false);
    }

    /// <summary>AUTH TLS, PBSZ 0 and PROT P towards the server (`upstream_tls`).</summary>
    async Task UpstreamTlsAsync(HostPort target)
    {
        await SendServerAsync("AUTH TLS"u8.ToArray()).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        if (_reply.Code != 234)
        {
            if (_s.UpstreamTls == UpstreamTlsMode.Required)
                throw new SessionEnd($"The server does not offer TLS (upstream_tls: required): {_reply.Summary()}");
            return;
        }
        var up = await _server!.UpgradeToClientTlsAsync(_s.UpstreamTlsOptions(target.Host), _cfg.Limits.ConnectTimeout, Ct)
            .ConfigureAwait(false);
        if (!up.Ok) throw new SessionEnd($"TLS with the server failed: {up.Error}");
        _serverLines = new LineReader(_server.Input, ServerMaxLine);
        await SendServerAsync("PBSZ 0"u8.ToArray()).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        await SendServerAsync("PROT P"u8.ToArray()).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        _serverProtP = _reply.Code is >= 200 and < 300;
        if (!_serverProtP && _s.UpstreamTls == UpstreamTlsMode.Required)
            throw new SessionEnd($"The server refuses protected data connections (PROT P): {_reply.Summary()}");
    }

    /// <summary>Waits for the server connection; there is none before USER when the client names the server.</summary>
    async Task EnsureServerAsync()
    {
        if (_connecting is null) throw new SessionEnd("No server connection");
        await _connecting.ConfigureAwait(false);
    }

    async Task<bool> HasServerAsync()
    {
        if (_connecting is null) return false;
        await _connecting.ConfigureAwait(false);
        return true;
    }

    async ValueTask SendServerAsync(ReadOnlyMemory<byte> line)
    {
        var output = _server!.Output;
        output.Write(line.Span);
        output.Write(Crlf);
        await output.FlushAsync(Ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads replies until a final one (2xx-5xx), relaying each to the client when <paramref name="forward"/>;
    /// the final one stays in <see cref="_reply"/> and its code goes on the exchange.
    /// </summary>
    async Task ReadFinalReplyAsync(bool forward, Exchange? x = null, TimeSpan? timeout = null)
    {
        while (true)
        {
            await ReadReplyAsync(timeout ?? _cfg.Limits.ResponseTimeout).ConfigureAwait(false);
            if (forward) await WriteClientAsync(_reply.Raw).ConfigureAwait(false);
            if (_reply.Code >= 200) break;
        }
        if (x is not null) x.Status = _reply.Code;
    }

    /// <summary>One complete, well-formed reply into <see cref="_reply"/>; anything else ends the session (421).</summary>
    async Task ReadReplyAsync(TimeSpan timeout)
    {
        _reply.Reset();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(timeout);
        while (true)
        {
            LineRead r;
            try { r = await _serverLines!.ReadAsync(cts.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
            {
                throw new SessionEnd($"The server did not answer in {timeout.TotalSeconds:0}s");
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
            {
                throw new SessionEnd("The server connection failed");
            }
            if (r.Status == LineStatus.End) throw new SessionEnd("The server closed the connection");
            if (r.Status == LineStatus.TooLong) throw Garbage($"reply line over {ServerMaxLine} bytes");
            switch (_reply.Feed(r.Line.Span))
            {
                case ReplyParse.Complete: return;
                case ReplyParse.Malformed: throw Garbage(_reply.Error!);
            }
        }
    }

    SessionEnd Garbage(string why)
    {
        _endReason = $"server reply does not parse: {why}";
        var x = _ctx.Open(_conn, ExchangeKinds.Request);
        x.Request = "(server reply)";
        x.Upstream = _target?.ToString();
        x.Deny(PseudoRules.Protocol, _endReason);
        x.Status = 421;
        x.Close();
        return new SessionEnd("Service not available: the server's reply was not understood");
    }

    async Task CloseUpstreamAsync()
    {
        if (_connecting is { } c)
        {
            try { await c.ConfigureAwait(false); }
            catch (Exception e) when (e is SessionEnd or IOException or System.Net.Sockets.SocketException or OperationCanceledException
                or ObjectDisposedException)
            { }
        }
        if (_server is { } s) await s.DisposeAsync().ConfigureAwait(false);
        _upstreamTarget?.End();
    }
}
