using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Ftp;

/// <summary>
/// A real FTP server for the tests: pyftpdlib from Debian (`python3-pyftpdlib`, only under /usr/bin/python3) on an
/// OS-picked port of 127.0.0.1 or ::1, serving a folder. User alice/secret may do everything; anonymous reads.
/// With a certificate it is pyftpdlib's TLS_FTPHandler (AUTH TLS, PROT P), optionally requiring TLS.
/// </summary>
public sealed class PyFtpd : IAsyncDisposable
{
    const string Script = """
        import argparse, logging
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
        from pyftpdlib.servers import FTPServer
        p = argparse.ArgumentParser()
        p.add_argument('--root'); p.add_argument('--host'); p.add_argument('--cert'); p.add_argument('--key')
        p.add_argument('--tls-required', action='store_true')
        a = p.parse_args()
        auth = DummyAuthorizer()
        auth.add_user('alice', 'secret', a.root, perm='elradfmwMT')
        auth.add_anonymous(a.root)
        class H(TLS_FTPHandler if a.cert else FTPHandler):
            pass
        if a.cert:
            H.certfile = a.cert
            H.keyfile = a.key
            H.tls_control_required = a.tls_required
            H.tls_data_required = a.tls_required
        H.authorizer = auth
        H.banner = 'pyftpdlib test server ready'
        logging.basicConfig(level=logging.ERROR)
        s = FTPServer((a.host, 0), H)
        s.max_cons = 1024
        s.max_cons_per_ip = 0
        print('LISTENING %d' % s.address[1], flush=True)
        s.serve_forever()
        """;

    readonly BackgroundProcess _process;
    public int Port { get; }
    public string Host { get; }
    public string Root { get; }

    PyFtpd(BackgroundProcess p, string host, int port, string root)
    {
        _process = p;
        Host = host;
        Port = port;
        Root = root;
    }

    /// <summary>"127.0.0.1:port" or "[::1]:port", as an `upstream:` value.</summary>
    public string Endpoint => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";

    public static async Task<PyFtpd> StartAsync(string root, string host = "127.0.0.1", (string Cert, string Key)? tls = null, bool tlsRequired = false)
    {
        var dir = Scratch.NewDir("pyftpd");
        var script = Path.Combine(dir, "server.py");
        await File.WriteAllTextAsync(script, Script);
        List<string> args = [script, "--root", root, "--host", host];
        if (tls is { } t) args.AddRange(["--cert", t.Cert, "--key", t.Key]);
        if (tlsRequired) args.Add("--tls-required");
        var p = Proc.Start("/usr/bin/python3", args);
        await p.WaitForOutputAsync("LISTENING ", TimeSpan.FromSeconds(20));
        var line = p.Output.Split('\n').First(l => l.StartsWith("LISTENING ", StringComparison.Ordinal));
        return new PyFtpd(p, host, int.Parse(line["LISTENING ".Length..].Trim()), root);
    }

    public string Output => _process.Output;

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
