using System.Buffers;
using System.Text;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// One FTP control connection through the gateway (SPEC 3, ftp). The gateway greets the client itself, connects
/// to the server (the fixed upstream, or the one named in `USER name@host[:port]`), and then, for every command
/// line: parse (500/501), check the login phase (530), resolve the path against the working directory, ask the
/// policy (550), and either answer itself (PASV/EPSV/PORT/EPRT, AUTH/PBSZ/PROT, REST, FEAT, QUIT) or relay the
/// line and the server's reply. Transfers open the gateway's own data connections on both sides
/// (<see cref="FtpSession"/>.Data.cs). A server reply that does not parse ends the session with 421.
/// </summary>
/// <remarks>Split by phase: this file is the command loop; Upstream.cs the server side; Data.cs transfers; Tls.cs AUTH TLS.</remarks>
public sealed partial class FtpSession
{
    enum Phase : byte { Greeted, UserSent, LoggedIn }

    readonly ListenerContext _ctx;
    readonly ClientConnection _conn;
    readonly FtpSettings _s;
    readonly ListenerConfig _cfg;
    readonly Admission _admission;
    /// <summary>The control connection's record (its closed line, written by the admission when the session ends).</summary>
    readonly Exchange _record;
    /// <summary>The session's life: cancelled when it ends or the connection is aborted (stops a connect still under way).</summary>
    readonly CancellationTokenSource _life;
    readonly RequestAttributes _attrs = new();
    readonly FtpReply _reply = new();
    Transport _client;
    LineReader _clientLines;
    Phase _phase;
    string? _pendingUser;
    /// <summary>The working directory as the server reports it (PWD after login and after every CWD).</summary>
    string _cwd = "/";
    /// <summary>A client line read while a transfer ran (ABOR is acted on at once; anything else waits its turn).</summary>
    Task<LineRead>? _ahead;
    /// <summary>Why the session ended, for the connection's log line.</summary>
    string? _endReason;

    /// <summary>Ends the session: the message (if any) goes to the client as a 421 first.</summary>
    sealed class SessionEnd(string reason, bool tellClient = true) : Exception(reason)
    {
        public bool TellClient { get; } = tellClient;
    }

    public FtpSession(ListenerContext ctx, Admission admission, ClientConnection conn, FtpSettings settings, StreamUpstreams? upstreams)
    {
        _upstreams = upstreams;
        _admission = admission;
        _ctx = ctx;
        _conn = conn;
        _s = settings;
        _cfg = ctx.Config;
        _client = conn.Transport;
        _clientLines = new LineReader(_client.Input, settings.Ftp.MaxLine);
        _record = conn.Record;
        _life = CancellationTokenSource.CreateLinkedTokenSource(conn.Aborted);
    }

    CancellationToken Ct => _life.Token;

    public async Task RunAsync()
    {
        try
        {
            // ABOR arrives with Telnet "urgent" bytes: keep them in the stream instead of losing them out of band.
            _conn.Socket?.SetSocketOption(System.Net.Sockets.SocketOptionLevel.Socket, System.Net.Sockets.SocketOptionName.OutOfBandInline, true);
            await ReplyAsync(null, 220, "Bastion FTP gateway ready").ConfigureAwait(false);
            if (!NamedMode) StartConnect(null);
            while (await NextCommandAsync().ConfigureAwait(false)) { }
        }
        catch (SessionEnd e)
        {
            _endReason ??= e.Message;
            if (e.TellClient) await TryReplyAsync(421, e.Message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException or ObjectDisposedException)
        {
            _endReason ??= Ct.IsCancellationRequested ? "aborted" : "client went away";
        }
        finally
        {
            _life.Cancel();
            await CloseDataAsync().ConfigureAwait(false);
            await CloseUpstreamAsync().ConfigureAwait(false);
            if (_ahead is { } a) _ = a.ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            _record.Request = _target is { } t ? $"FTP {t}" : "FTP";
            _record.Upstream = _target?.ToString();
            _record.Reason = _endReason;
            _life.Dispose();
        }
    }

    /// <summary>Reads and handles one command; false when the session is over.</summary>
    async Task<bool> NextCommandAsync()
    {
        LineRead read;
        if (_ahead is { } pending)
        {
            _ahead = null;
            read = await pending.ConfigureAwait(false);
        }
        else read = await ReadClientLineAsync().ConfigureAwait(false);
        _record.AddIn(read.WireLength);
        switch (read.Status)
        {
            case LineStatus.End:
                _endReason ??= "client closed the connection";
                return false;
            case LineStatus.TooLong:
                var x = _ctx.Open(_conn, ExchangeKinds.Request);
                x.Request = "(line too long)";
                x.Deny(PseudoRules.Protocol, $"command line over {_s.Ftp.MaxLine} bytes");
                await ReplyAsync(x, 500, $"Command line too long (max {_s.Ftp.MaxLine} bytes)").ConfigureAwait(false);
                x.Close();
                return true;
        }
        return await HandleLineAsync(read.Line).ConfigureAwait(false);
    }

    /// <summary>A client line, within the idle timeout; a gateway that is draining answers 421 instead of waiting.</summary>
    async Task<LineRead> ReadClientLineAsync()
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct, _conn.Draining);
        cts.CancelAfter(_cfg.Limits.IdleTimeout);
        try
        {
            return await _clientLines.ReadAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            throw new SessionEnd(_conn.Draining.IsCancellationRequested ? "Gateway shutting down, closing control connection"
                : $"Idle timeout ({_cfg.Limits.IdleTimeout.TotalSeconds:0}s), closing control connection");
        }
    }

    async Task<bool> HandleLineAsync(ReadOnlyMemory<byte> lineMemory)
    {
        var status = FtpCommandParser.Parse(lineMemory.Span, out var cmd);
        var spec = cmd.Spec;
        var x = _ctx.Open(_conn, spec is { OpensData: true } ? ExchangeKinds.Transfer : ExchangeKinds.Request);
        try
        {
            if (status != FtpParse.Ok)
            {
                x.Request = status == FtpParse.Unknown ? VerbText(lineMemory.Span, cmd.VerbStart) : spec!.Name;
                x.Deny(PseudoRules.Protocol, cmd.Error);
                await ReplyAsync(x, cmd.ErrorCode, status == FtpParse.Unknown ? $"'{x.Request}': command not understood" : cmd.Error!).ConfigureAwait(false);
                return true;
            }
            spec = cmd.Spec!;
            x.Request = spec.Name;
            if (spec.Phase == FtpPhase.LoggedIn && _phase != Phase.LoggedIn)
            {
                x.Deny(PseudoRules.Protocol, "not logged in");
                await ReplyAsync(x, 530, "Please login with USER and PASS").ConfigureAwait(false);
                return true;
            }
            if (spec.Verb == FtpVerb.USER && _s.Ftp.ClientTlsRequired && !_client.IsTls)
            {
                x.Deny(PseudoRules.Protocol, "client_tls: required and no AUTH TLS yet");
                await ReplyAsync(x, 530, "AUTH TLS required before USER").ConfigureAwait(false);
                return true;
            }

            // The path, resolved and normalised, is what the policy judges and what the server gets.
            string? path = null;
            bool canonical = true;
            if (cmd.HasPath)
            {
                if (!FtpPath.TryResolve(_cwd, cmd.Path(lineMemory.Span), out var p, out canonical, out var err))
                {
                    x.Request = $"{spec.Name} (bad path)";
                    x.Deny(PseudoRules.Protocol, err);
                    await ReplyAsync(x, 501, $"Bad path: {err}").ConfigureAwait(false);
                    return true;
                }
                path = p;
            }
            else if (spec.HasPath) path = spec.Verb is FtpVerb.CDUP or FtpVerb.XCUP ? FtpPath.Parent(_cwd) : _cwd;
            else if (spec.Verb is FtpVerb.CDUP or FtpVerb.XCUP) path = FtpPath.Parent(_cwd);

            HostPort? named = null;
            if (spec.Verb == FtpVerb.USER && NamedMode)
            {
                if (!FtpUserTarget.TryParse(cmd.Arg(lineMemory.Span), out var name, out named, out var why))
                {
                    x.Request = "USER";
                    x.Deny(PseudoRules.Protocol, why);
                    await ReplyAsync(x, 530, $"Log in as user@host[:port]: {why}").ConfigureAwait(false);
                    return true;
                }
                _pendingUser = name;
            }

            x.Request = RequestText(spec, path, lineMemory.Span, cmd);
            var decision = Decide(spec, path, named);
            x.Decide(decision);
            if (!decision.Allowed)
            {
                if (spec.OpensData) await CloseDataAsync().ConfigureAwait(false);
                if (spec.Verb == FtpVerb.RNTO) _renameFrom = null;
                string what = path ?? spec.Name;
                int code = spec.Verb is FtpVerb.USER or FtpVerb.PASS or FtpVerb.ACCT ? 530 : 550;
                await ReplyAsync(x, code, $"{what}: denied by policy: {decision.Reason ?? "denied"}").ConfigureAwait(false);
                return true;
            }
            if (spec.Action == FtpAction.NotImplemented)
            {
                await ReplyAsync(x, 502, $"{spec.Name} not implemented through this gateway").ConfigureAwait(false);
                return true;
            }
            return await DispatchAsync(x, spec, cmd, lineMemory, path, canonical, named).ConfigureAwait(false);
        }
        finally
        {
            // A transfer that got its data connections is logged by the data connection's record instead.
            if (!_handedOver)
            {
                x.Upstream = _target?.ToString();
                x.Close();
            }
            _handedOver = false;
        }
    }

    /// <summary>The policy's verdict on one command: source, user (after login), server, command and path (SPEC 2.1).</summary>
    Decision Decide(FtpCommandSpec spec, string? path, HostPort? named)
    {
        var a = _attrs;
        a.Reset();
        a.Source = _conn.Client.Address;
        a.User = _phase == Phase.LoggedIn ? _conn.User : null;
        FtpAttributes.Fill(a, spec, path, named ?? (NamedMode ? _target : FtpDescriptor.FixedServer(_cfg)));
        return Descriptor.Decide(_ctx.Policy, a);
    }

    async Task<bool> DispatchAsync(Exchange x, FtpCommandSpec spec, FtpCommandLine cmd, ReadOnlyMemory<byte> line, string? path,
        bool canonical, HostPort? named)
    {
        switch (spec.Verb)
        {
            case FtpVerb.QUIT:
                await QuitAsync(x).ConfigureAwait(false);
                return false;
            case FtpVerb.USER:
                await UserAsync(x, cmd, line, named).ConfigureAwait(false);
                return true;
            case FtpVerb.PASS or FtpVerb.ACCT:
                await LoginStepAsync(x, spec, line, cmd).ConfigureAwait(false);
                return true;
            case FtpVerb.PASV or FtpVerb.EPSV or FtpVerb.PORT or FtpVerb.EPRT:
                await ClientDataSetupAsync(x, spec, cmd).ConfigureAwait(false);
                return true;
            case FtpVerb.REST:
                _restOffset = cmd.Number;
                await ReplyAsync(x, 350, $"Restarting at {cmd.Number}. Send STORE or RETRIEVE to initiate transfer").ConfigureAwait(false);
                return true;
            case FtpVerb.AUTH or FtpVerb.PBSZ or FtpVerb.PROT or FtpVerb.CCC:
                return await SecurityAsync(x, spec, cmd).ConfigureAwait(false);
            case FtpVerb.CLNT:
                // Which client software is used is the gateway's business, not the server's.
                await ReplyAsync(x, 200, "Noted").ConfigureAwait(false);
                return true;
            case FtpVerb.FEAT:
                await FeatAsync(x).ConfigureAwait(false);
                return true;
            case FtpVerb.RNFR:
                await ForwardAsync(x, spec, cmd, line, path, canonical).ConfigureAwait(false);
                _renameFrom = x.Status == 350 ? path : null;
                return true;
            case FtpVerb.RNTO:
                if (_renameFrom is null)
                {
                    await ReplyAsync(x, 503, "RNFR first").ConfigureAwait(false);
                    return true;
                }
                _renameFrom = null;
                await ForwardAsync(x, spec, cmd, line, path, canonical).ConfigureAwait(false);
                return true;
            case FtpVerb.CWD or FtpVerb.XCWD or FtpVerb.CDUP or FtpVerb.XCUP:
                await ForwardAsync(x, spec, cmd, line, path, canonical).ConfigureAwait(false);
                if (x.Status is >= 200 and < 300) await LearnCwdAsync(path!).ConfigureAwait(false);
                return true;
            case FtpVerb.PWD or FtpVerb.XPWD:
                await ForwardAsync(x, spec, cmd, line, path, canonical).ConfigureAwait(false);
                if (_reply.Code == 257 && FtpPath.TryParse257(_reply.FirstText, out var dir)) _cwd = dir!;
                return true;
        }
        if (spec.OpensData)
        {
            await TransferAsync(x, spec, cmd, line, path!, canonical).ConfigureAwait(false);
            return true;
        }
        if (_server is null && _connecting is null)
        {
            // No server yet (it is named at USER): the few commands that make sense are answered here.
            await PreLoginLocalAsync(x, spec, line, cmd).ConfigureAwait(false);
            return true;
        }
        await ForwardAsync(x, spec, cmd, line, path, canonical).ConfigureAwait(false);
        return true;
    }

    string? _renameFrom;
    /// <summary>The current command's exchange became the data connection's record (one line per transfer).</summary>
    bool _handedOver;

    async Task PreLoginLocalAsync(Exchange x, FtpCommandSpec spec, ReadOnlyMemory<byte> line, FtpCommandLine cmd)
    {
        switch (spec.Verb)
        {
            case FtpVerb.NOOP:
                await ReplyAsync(x, 200, "NOOP ok").ConfigureAwait(false);
                return;
            case FtpVerb.SYST:
                await ReplyAsync(x, 215, "UNIX Type: L8").ConfigureAwait(false);
                return;
            case FtpVerb.HELP:
                await ReplyAsync(x, 214, "Log in as user@host[:port] to reach a server").ConfigureAwait(false);
                return;
            case FtpVerb.OPTS when FtpCommandParser.AsciiEquals(cmd.Arg(line.Span), "UTF8 ON"):
                _utf8 = true;
                await ReplyAsync(x, 200, "UTF8 mode enabled").ConfigureAwait(false);
                return;
        }
        await ReplyAsync(x, 530, "Please login with USER and PASS").ConfigureAwait(false);
    }

    bool _utf8;

    async Task QuitAsync(Exchange x)
    {
        _endReason = "QUIT";
        if (_server is not null)
        {
            try
            {
                await SendServerAsync("QUIT"u8.ToArray()).ConfigureAwait(false);
                await ReadReplyAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SessionEnd or IOException or System.Net.Sockets.SocketException or OperationCanceledException) { }
        }
        await ReplyAsync(x, 221, "Goodbye").ConfigureAwait(false);
    }

    async Task FeatAsync(Exchange x)
    {
        FtpReply? server = null;
        if (await HasServerAsync().ConfigureAwait(false))
        {
            await SendServerAsync("FEAT"u8.ToArray()).ConfigureAwait(false);
            await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
            server = _reply;
        }
        var bytes = FtpFeatures.Reply(server, _s.ClientTls is not null);
        await WriteClientAsync(bytes).ConfigureAwait(false);
        x.Status = 211;
    }

    /// <summary>USER: connect to the named server if it is not known yet, then relay the login.</summary>
    async Task UserAsync(Exchange x, FtpCommandLine cmd, ReadOnlyMemory<byte> line, HostPort? named)
    {
        if (named is not null)
        {
            if (_target is not null && _target != named)
            {
                await ReplyAsync(x, 530, $"Already connected to {_target}; reconnect to log in elsewhere").ConfigureAwait(false);
                return;
            }
            if (_target is null)
            {
                // The server the client named is judged at every address it resolves to, before connecting (SPEC 2.1).
                var judged = await Connector.ResolveJudgedAsync(_ctx.Runtime.Resolver, _ctx.Policy, _attrs, named.Host,
                    _cfg.Limits.ConnectTimeout, Ct).ConfigureAwait(false);
                if (judged.Denied is { } denied)
                {
                    x.Decide(denied);
                    await ReplyAsync(x, 530, $"{named}: denied by policy: {denied.Reason ?? "denied"}").ConfigureAwait(false);
                    return;
                }
                if (!judged.Ok)
                {
                    await ReplyAsync(x, 530, $"Cannot resolve {named.Host}: {judged.Error}").ConfigureAwait(false);
                    return;
                }
                StartConnect(named, judged.Allowed);
            }
        }
        else _pendingUser = Encoding.UTF8.GetString(cmd.Arg(line.Span));
        await EnsureServerAsync().ConfigureAwait(false);
        // The server sees the user name only: the @host part was for the gateway.
        ReadOnlyMemory<byte> user = named is null ? line[cmd.VerbStart..] : Encoding.UTF8.GetBytes("USER " + _pendingUser);
        await SendServerAsync(user).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: true, x).ConfigureAwait(false);
        _phase = _reply.Code switch { 331 or 332 => Phase.UserSent, 230 => Phase.LoggedIn, _ => Phase.Greeted };
        if (_phase == Phase.LoggedIn) await LoggedInAsync().ConfigureAwait(false);
    }

    async Task LoginStepAsync(Exchange x, FtpCommandSpec spec, ReadOnlyMemory<byte> line, FtpCommandLine cmd)
    {
        if (_phase != Phase.UserSent)
        {
            await ReplyAsync(x, 503, _phase == Phase.LoggedIn ? "Already logged in" : "Login with USER first").ConfigureAwait(false);
            return;
        }
        await SendServerAsync(line[cmd.VerbStart..]).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: true, x).ConfigureAwait(false);
        if (_reply.Code == 230)
        {
            _phase = Phase.LoggedIn;
            await LoggedInAsync().ConfigureAwait(false);
        }
        else if (_reply.Code != 332) _phase = Phase.Greeted;
        if (spec.Verb == FtpVerb.PASS && _reply.Code is 530 or 430) _ctx.Metrics.AuthFailure(_ctx.Name);
    }

    async Task LoggedInAsync()
    {
        _conn.User = _pendingUser;
        if (_utf8)
        {
            await SendServerAsync("OPTS UTF8 ON"u8.ToArray()).ConfigureAwait(false);
            await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        }
        await LearnCwdAsync("/").ConfigureAwait(false);
    }

    /// <summary>Asks the server where the session now is (PWD); when it does not say, the lexical result stands.</summary>
    async Task LearnCwdAsync(string fallback)
    {
        _cwd = fallback;
        await SendServerAsync("PWD"u8.ToArray()).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: false).ConfigureAwait(false);
        if (_reply.Code == 257 && FtpPath.TryParse257(_reply.FirstText, out var dir)) _cwd = dir!;
    }

    /// <summary>Relays a command (with its path rewritten when the client's form was not canonical) and the reply.</summary>
    async Task ForwardAsync(Exchange x, FtpCommandSpec spec, FtpCommandLine cmd, ReadOnlyMemory<byte> line, string? path, bool canonical)
    {
        await EnsureServerAsync().ConfigureAwait(false);
        await SendServerAsync(OutgoingLine(cmd, line, path, canonical)).ConfigureAwait(false);
        await ReadFinalReplyAsync(forward: true, x).ConfigureAwait(false);
    }

    /// <summary>
    /// The command as the server gets it: the client's bytes (without a Telnet prefix) when its path was already
    /// canonical, else the verb with the resolved absolute path, so that what the server acts on is what the
    /// policy judged (`..` or `//` never reach the server).
    /// </summary>
    static ReadOnlyMemory<byte> OutgoingLine(FtpCommandLine cmd, ReadOnlyMemory<byte> line, string? path, bool canonical)
    {
        if (canonical || path is null || !cmd.HasPath) return line[cmd.VerbStart..];
        var prefix = line.Span[cmd.VerbStart..cmd.PathStart];
        var p = FtpPath.Encode(path);
        var buf = new byte[prefix.Length + p.Length];
        prefix.CopyTo(buf);
        p.CopyTo(buf.AsSpan(prefix.Length));
        return buf;
    }

    /// <summary>What the access log says the command was: never a password.</summary>
    static string RequestText(FtpCommandSpec spec, string? path, ReadOnlySpan<byte> line, FtpCommandLine cmd)
    {
        switch (spec.Verb)
        {
            case FtpVerb.PASS or FtpVerb.ACCT:
                return $"{spec.Name} ****";
            case FtpVerb.USER:
                // The name as given, `@host[:port]` included when the client names the server.
                return $"USER {Printable(cmd.Arg(line), 64)}";
        }
        if (path is not null) return $"{spec.Name} {path}";
        return cmd.HasArg && spec.Arg != FtpArg.None ? $"{spec.Name} {Printable(cmd.Arg(line), 64)}" : spec.Name;
    }

    static string VerbText(ReadOnlySpan<byte> line, int start)
    {
        var rest = line[Math.Min(start, line.Length)..];
        int sp = rest.IndexOf((byte)' ');
        return Printable(sp < 0 ? rest : rest[..sp], 16);
    }

    /// <summary>Bytes for a log or a reply: UTF-8 where valid, control bytes replaced, bounded.</summary>
    static string Printable(ReadOnlySpan<byte> bytes, int max)
    {
        if (bytes.Length > max) bytes = bytes[..max];
        var s = Encoding.UTF8.GetString(bytes);
        return string.Create(s.Length, s, static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = char.IsControl(src[i]) ? '?' : src[i];
        });
    }

    /// <summary>One-line reply to the client; records the code on the exchange.</summary>
    async ValueTask ReplyAsync(Exchange? x, int code, string text)
    {
        var clean = text.Replace('\r', ' ').Replace('\n', ' ');
        await WriteClientAsync(Encoding.UTF8.GetBytes($"{code} {clean}\r\n")).ConfigureAwait(false);
        if (x is not null) x.Status = code;
    }

    async ValueTask TryReplyAsync(int code, string text)
    {
        try { await ReplyAsync(null, code, text).ConfigureAwait(false); }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException
            or ObjectDisposedException or InvalidOperationException)
        { }
    }

    async ValueTask WriteClientAsync(ReadOnlyMemory<byte> bytes)
    {
        _client.Output.Write(bytes.Span);
        await _client.Output.FlushAsync(Ct).ConfigureAwait(false);
        _record.AddOut(bytes.Length);
    }

    /// <summary>No `upstream:` configured: the client names the server at USER.</summary>
    bool NamedMode => _cfg.Upstream is null;

    static readonly Gateway.IListenerDescriptor Descriptor = new FtpDescriptor();
}
