using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Configuration;

namespace Bastion.Observability.Syslog;

/// <summary>
/// Access-log events as RFC 5424 syslog messages: to the local syslog socket (/dev/log, a Unix datagram socket:
/// journald, rsyslog, syslog-ng), to a UDP address (RFC 5426: one message per datagram) or a TCP address
/// (RFC 6587 octet counting: "LENGTH SP MESSAGE"). Used by the log's single writer task only. A syslog daemon
/// that is down never blocks traffic: the message is dropped and counted, and TCP reconnects at most once a second.
/// </summary>
public sealed class SyslogSender : IAsyncDisposable
{
    readonly SyslogConfig _config;
    readonly EndPoint _endpoint;
    readonly bool _stream;
    readonly byte[] _host, _app, _pid;
    Socket? _socket;
    long _retryAt;

    public string Description { get; }

    public SyslogSender(SyslogConfig config)
    {
        _config = config;
        (_endpoint, _stream, Description) = Resolve(config.Address);
        _host = Encoding.ASCII.GetBytes(HeaderField(Dns.GetHostName(), 255));
        _app = Encoding.ASCII.GetBytes(HeaderField(config.AppName, 48));
        _pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        // A local socket that is not there is a startup fault, like a log file that cannot be opened.
        if (_endpoint is UnixDomainSocketEndPoint && !File.Exists(config.Address.StartsWith("unix:", StringComparison.Ordinal) ? config.Address[5..] : config.Address))
            throw new IOException($"no syslog socket at {config.Address}");
    }

    /// <summary>`/dev/log`, `unix:/path`, `udp://host:port`, `tcp://host:port`.</summary>
    public static (EndPoint EndPoint, bool Stream, string Description) Resolve(string address)
    {
        if (address.StartsWith('/')) return (new UnixDomainSocketEndPoint(address), false, address);
        if (address.StartsWith("unix:", StringComparison.Ordinal)) return (new UnixDomainSocketEndPoint(address[5..]), false, address[5..]);
        if (!TryParseNetwork(address, out var scheme, out var hp, out var error)) throw new ArgumentException(error);
        var ip = hp!.Host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(hp.Host.Trim('[', ']'), out var literal) ? literal
            : Dns.GetHostAddresses(hp.Host).First();
        return (new IPEndPoint(ip, hp.Port), scheme == "tcp", address);
    }

    /// <summary>The syntax check `check` runs: a path, or udp://host:port / tcp://host:port with a port 1-65535.</summary>
    public static bool TryParseNetwork(string address, out string scheme, out HostPort? hp, out string? error)
    {
        scheme = "";
        hp = null;
        error = null;
        int sep = address.IndexOf("://", StringComparison.Ordinal);
        if (sep < 0 || address[..sep] is not ("udp" or "tcp"))
        {
            error = $"logging.syslog.address '{address}' is not /path/to/socket, unix:/path, udp://host:port or tcp://host:port";
            return false;
        }
        scheme = address[..sep];
        if (!HostPort.TryParse(address[(sep + 3)..], out hp) || hp!.Port == 0)
        {
            error = $"logging.syslog.address '{address}': '{address[(sep + 3)..]}' is not host:port (port 1-65535)";
            return false;
        }
        return true;
    }

    /// <summary>
    /// `&lt;PRI&gt;1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - ` (no structured data): the message's header, before the line.
    /// Deny decisions are `notice`, everything else `info`; MSGID is the event (request, connection, transfer).
    /// </summary>
    public void WriteHeader(AccessEvent e, IBufferWriter<byte> output)
    {
        var line = new LogFormats.LogLine(output);
        int severity = e.Verdict == Verdict.Deny ? 5 : 6;
        line.Char('<');
        line.Number(_config.Facility * 8 + severity);
        line.Raw(">1 "u8);
        line.Rfc3339(e.Ts);
        line.Char(' ');
        line.Raw(_host);
        line.Char(' ');
        line.Raw(_app);
        line.Char(' ');
        line.Raw(_pid);
        line.Char(' ');
        line.Raw(HeaderField(e.Event, 32));
        line.Raw(" - "u8);
    }

    /// <summary>Sends one message; false when it could not be (counted as dropped by the caller).</summary>
    public async ValueTask<bool> SendAsync(ReadOnlyMemory<byte> message)
    {
        try
        {
            var s = await SocketAsync().ConfigureAwait(false);
            if (s is null) return false;
            if (_stream)
            {
                // RFC 6587 octet counting.
                var prefix = Encoding.ASCII.GetBytes($"{message.Length} ");
                await s.SendAsync(prefix, SocketFlags.None).ConfigureAwait(false);
                await s.SendAsync(message, SocketFlags.None).ConfigureAwait(false);
            }
            else if (_endpoint is UnixDomainSocketEndPoint) await s.SendToAsync(message, SocketFlags.None, _endpoint).ConfigureAwait(false);
            else await s.SendAsync(message, SocketFlags.None).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            _socket?.Dispose();
            _socket = null;
            _retryAt = Environment.TickCount64 + 1000;
            return false;
        }
    }

    async ValueTask<Socket?> SocketAsync()
    {
        if (_socket is not null) return _socket;
        if (Environment.TickCount64 < _retryAt) return null;
        var s = _endpoint switch
        {
            UnixDomainSocketEndPoint => new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified),
            IPEndPoint ip => new Socket(ip.AddressFamily, _stream ? SocketType.Stream : SocketType.Dgram, _stream ? ProtocolType.Tcp : ProtocolType.Udp),
            _ => throw new InvalidOperationException("unknown syslog endpoint"),
        };
        try
        {
            if (_endpoint is IPEndPoint)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await s.ConnectAsync(_endpoint, cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            s.Dispose();
            _retryAt = Environment.TickCount64 + 1000;
            return null;
        }
        return _socket = s;
    }

    /// <summary>RFC 5424 header fields are printable US-ASCII without spaces, bounded; "-" when empty.</summary>
    static string HeaderField(string? value, int max)
    {
        if (string.IsNullOrEmpty(value)) return "-";
        var sb = new StringBuilder(Math.Min(value.Length, max));
        foreach (var c in value)
        {
            if (sb.Length == max) break;
            sb.Append(c is > ' ' and < '\x7f' ? c : '_');
        }
        return sb.ToString();
    }

    public ValueTask DisposeAsync()
    {
        _socket?.Dispose();
        _socket = null;
        return ValueTask.CompletedTask;
    }
}
