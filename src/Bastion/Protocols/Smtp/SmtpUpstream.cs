using System.Buffers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Bastion.Protocols.Http.Io;
using Bastion.Configuration;
using Bastion.Gateway;
using System.Runtime.CompilerServices;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// The gateway's SMTP client session with the server: connect (trying each target of the group in turn), read the
/// greeting, EHLO (HELO if refused), STARTTLS per `upstream_tls`, then one command and one reply at a time. Every
/// failure is a message for the client's 421/451, never an exception from here.
/// </summary>
public sealed class SmtpUpstream : IAsyncDisposable
{
    readonly Transport _t;
    LineReader _reader;
    readonly ReplyAccumulator _acc = new();
    readonly TimeSpan _replyTimeout;
    /// <summary>The session's abort token and one reply timer on top of it, re-armed for each reply (not a new pair each time).</summary>
    readonly CancellationToken _aborted;
    readonly CancellationTokenSource _replyTimer;

    SmtpUpstream(Transport t, HostPort target, TimeSpan replyTimeout, CancellationToken aborted)
    {
        _t = t;
        _t.OutputBufferSize = SmtpListener.MessageBufferSize;
        Target = target;
        TargetText = target.ToString();
        _replyTimeout = replyTimeout;
        _aborted = aborted;
        _replyTimer = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        _reader = new LineReader(t.Input, 4096);
    }

    public HostPort Target { get; }
    /// <summary><see cref="Target"/> as logged (made once, not per command).</summary>
    public string TargetText { get; }
    public ServerCapabilities Capabilities { get; private set; } = ServerCapabilities.None;
    /// <summary>The TLS version on this leg (`TLSv1.3`), or null when plain.</summary>
    public string? TlsVersion => _t.Tls is { } s ? TlsName(s.SslProtocol) : null;
    public bool TlsVerified { get; private set; }
    public Transport Transport => _t;

    /// <summary>Where message data goes: written by the DATA relay, flushed with <see cref="FlushAsync"/>.</summary>
    public System.IO.Pipelines.PipeWriter Output => _t.Output;

    public readonly record struct Opened(SmtpUpstream? Upstream, string? Error);

    /// <summary>Connects to the first target that answers with a 220 greeting.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public static async ValueTask<Opened> OpenAsync(IReadOnlyList<HostPort> targets, int start, TimeSpan connectTimeout,
        TimeSpan replyTimeout, CancellationToken ct)
    {
        string error = "no upstream";
        for (int i = 0; i < targets.Count; i++)
        {
            var target = targets[(start + i) % targets.Count];
            var c = await Transport.ConnectAsync(target.Host, target.Port, connectTimeout, ct).ConfigureAwait(false);
            if (!c.Ok)
            {
                error = $"upstream {target}: {c.Message ?? c.Error.ToString()}";
                continue;
            }
            var up = new SmtpUpstream(c.Transport!, target, replyTimeout, ct);
            var (greeting, err) = await up.ReadReplyAsync(ct).ConfigureAwait(false);
            if (greeting is { Code: 220 }) return new Opened(up, null);
            error = $"upstream {target}: " + (greeting is null ? err : $"greeting {greeting}");
            await up.DisposeAsync().ConfigureAwait(false);
        }
        return new Opened(null, error);
    }

    /// <summary>EHLO (or HELO when EHLO is refused), then STARTTLS when offered and wanted, and EHLO again over TLS.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public async ValueTask<string?> HelloAsync(string name, string tlsMode, BastionConfig root, SmtpConfig cfg, CancellationToken ct)
    {
        var (r, err) = await CommandAsync($"EHLO {name}", ct).ConfigureAwait(false);
        if (r is null) return err;
        if (r.Code == 250) Capabilities = ServerCapabilities.FromEhlo(r);
        else
        {
            (r, err) = await CommandAsync($"HELO {name}", ct).ConfigureAwait(false);
            if (r is null) return err;
            if (r.Code != 250) return $"upstream {Target} refused HELO: {r}";
            Capabilities = ServerCapabilities.None;
        }
        if (tlsMode == "off") return null;
        if (!Capabilities.StartTls)
            return tlsMode == "required" ? $"upstream {Target} does not offer STARTTLS (upstream_tls: required)" : null;
        (r, err) = await CommandAsync("STARTTLS", ct).ConfigureAwait(false);
        if (r is null) return err;
        if (r.Code != 220)
            return tlsMode == "required" ? $"upstream {Target} refused STARTTLS: {r}" : null;
        bool verify = tlsMode == "required";
        X509Certificate2Collection? extra = null;
        if (verify && cfg.UpstreamCa is { } ca)
        {
            extra = [];
            extra.ImportFromPemFile(root.Resolve(ca));
        }
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = Target.Host,
            RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
            {
                if (!verify) return true;
                if (errors == SslPolicyErrors.None) return true;
                if (extra is null || cert is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;
                using var c = new X509Chain();
                c.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                c.ChainPolicy.CustomTrustStore.AddRange(extra);
                c.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return c.Build(new X509Certificate2(cert));
            },
        };
        var up = await _t.UpgradeToClientTlsAsync(options, _replyTimeout, ct).ConfigureAwait(false);
        if (!up.Ok) return $"upstream {Target}: {up.Error}";
        TlsVerified = verify;
        _reader = new LineReader(_t.Input, 4096);
        (r, err) = await CommandAsync($"EHLO {name}", ct).ConfigureAwait(false);
        if (r is null) return err;
        if (r.Code != 250) return $"upstream {Target} refused EHLO after STARTTLS: {r}";
        Capabilities = ServerCapabilities.FromEhlo(r);
        return null;
    }

    /// <summary>Sends one command line and reads its reply; a null reply comes with why (closed, timeout, garbage).</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public async ValueTask<(SmtpReply? Reply, string? Error)> CommandAsync(string line, CancellationToken ct)
    {
        try
        {
            WriteLine(line);
            await _t.Output.FlushAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
            return (null, $"upstream {Target}: connection lost ({e.Message})");
        }
        return await ReadReplyAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Encodes the line and its CRLF straight into the output pipe.</summary>
    public void WriteLine(string line)
    {
        var output = _t.Output;
        var span = output.GetSpan(Encoding.UTF8.GetMaxByteCount(line.Length) + 2);
        int n = Encoding.UTF8.GetBytes(line, span);
        span[n] = (byte)'\r';
        span[n + 1] = (byte)'\n';
        output.Advance(n + 2);
    }

    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public async ValueTask<string?> FlushAsync(CancellationToken ct)
    {
        try
        {
            await _t.Output.FlushAsync(ct).ConfigureAwait(false);
            return null;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
            return $"upstream {Target}: connection lost ({e.Message})";
        }
    }

    /// <summary>Reads one whole reply within the reply timeout. Garbage from the server is an error, not a reply.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public async ValueTask<(SmtpReply? Reply, string? Error)> ReadReplyAsync(CancellationToken ct)
    {
        // The session's own token (every reply but QUIT's): the timer made once is re-armed. Another token, or a
        // timer that already fired: a linked source for this reply alone.
        CancellationTokenSource? own = null;
        var cts = ct == _aborted && _replyTimer.TryReset() ? _replyTimer : own = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(_replyTimeout);
        _acc.Reset();
        try
        {
            while (true)
            {
                var read = await _reader.ReadAsync(cts.Token).ConfigureAwait(false);
                switch (read.Status)
                {
                    case LineStatus.End: return (null, $"upstream {Target} closed the connection");
                    case LineStatus.TooLong: return (null, $"upstream {Target} sent an over-long reply line");
                }
                if (read.Flags != LineFlags.None) return (null, $"upstream {Target} sent a reply with a bare CR or LF");
                switch (_acc.Add(read.Line.Span, out var reply, out var error))
                {
                    case ReplyStatus.Complete: return (reply, null);
                    case ReplyStatus.Malformed: return (null, $"upstream {Target} sent garbage: {error}");
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (null, $"upstream {Target} did not answer in {_replyTimeout.TotalSeconds:0.#}s");
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
            return (null, $"upstream {Target}: connection lost ({e.Message})");
        }
        finally { own?.Dispose(); }
    }

    /// <summary>
    /// Ends the session: QUIT goes out, its 221 is not waited for (a receive, a wake-up and a timer less per session;
    /// the server has nothing left to say that would change anything). A server that does not take even those six
    /// bytes at once is dropped.
    /// </summary>
    [AsyncMethodBuilder(typeof(PooledBuilder))]
    public async ValueTask QuitAsync()
    {
        WriteLine("QUIT");
        var sent = _t.Output.FlushAsync();
        if (!sent.IsCompleted) _t.Abort();
        await sent.ConfigureAwait(false);
    }

    /// <summary>Drops the connection at once: an unfinished DATA is then discarded by the server (RFC 5321 4.1.1.4).</summary>
    public void Abort() => _t.Abort();

    public ValueTask DisposeAsync()
    {
        _replyTimer.Dispose();
        return _t.DisposeAsync();
    }

    public static string TlsName(System.Security.Authentication.SslProtocols p) => p switch
    {
        System.Security.Authentication.SslProtocols.Tls13 => "TLSv1.3",
        System.Security.Authentication.SslProtocols.Tls12 => "TLSv1.2",
        _ => p.ToString(),
    };
}
