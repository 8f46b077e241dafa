using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Ftp;

/// <summary>
/// pyftpdlib servers (plain on 127.0.0.1, TLS-only, plain on ::1) over one scratch tree, two servers that answer
/// garbage, and one gateway with a listener per way of using it. Tests write under their own names.
/// </summary>
public sealed class FtpFixture : IAsyncLifetime
{
    public string Root { get; } = Scratch.NewDir("ftproot");
    public PyFtpd Plain { get; private set; } = null!;
    public PyFtpd Tls { get; private set; } = null!;
    public PyFtpd V6 { get; private set; } = null!;
    public TestGateway Gateway { get; private set; } = null!;
    public GarbageServer Garbage { get; } = new("220 fake server\r\n", "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    public GarbageServer GarbageGreeting { get; } = new("SSH-2.0-OpenSSH_9.2\r\n", null);
    /// <summary>The one passive port of the `ports` listener.</summary>
    public int PassivePort { get; private set; }
    public byte[] Big { get; } = RandomNumberGenerator.GetBytes(2 * 1024 * 1024);

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Path.Combine(Root, "pub", "tree", "sub"));
        Directory.CreateDirectory(Path.Combine(Root, "ro"));
        Directory.CreateDirectory(Path.Combine(Root, "up"));
        await File.WriteAllTextAsync(Path.Combine(Root, "pub", "a.txt"), "hello\n");
        await File.WriteAllBytesAsync(Path.Combine(Root, "pub", "big.bin"), Big);
        await File.WriteAllTextAsync(Path.Combine(Root, "pub", "tree", "x.txt"), "x\n");
        await File.WriteAllTextAsync(Path.Combine(Root, "pub", "tree", "sub", "y.txt"), "y\n");
        await File.WriteAllBytesAsync(Path.Combine(Root, "pub", "tree", "sub", "z.bin"), RandomNumberGenerator.GetBytes(300_000));
        await File.WriteAllTextAsync(Path.Combine(Root, "ro", "keep.txt"), "keep\n");
        // Large enough that a transfer is still running when a test cuts it (sparse: no disk time).
        using (var fs = File.Create(Path.Combine(Root, "pub", "huge.bin"))) fs.SetLength(1L << 30);

        var certDir = Scratch.NewDir("ftpcert");
        var pem = TestCerts.WritePem(certDir, "srv", TestCerts.Localhost());
        var startPlain = PyFtpd.StartAsync(Root);
        var startTls = PyFtpd.StartAsync(Root, tls: pem, tlsRequired: true);
        var startV6 = PyFtpd.StartAsync(Root, host: "::1");
        Plain = await startPlain;
        Tls = await startTls;
        V6 = await startV6;
        PassivePort = Wait.FreePort();

        string L(string name, string upstream, string policy = "files", string? ftp = null, string listen = "127.0.0.1:0") =>
            $"  - {{ name: {name}, type: ftp, listen: \"{listen}\", {(upstream.Length > 0 ? $"upstream: \"{upstream}\", " : "")}policy: {policy}{(ftp is null ? "" : $", ftp: {ftp}")} }}\n";
        var yaml = "listeners:\n"
            + L("plain", Plain.Endpoint)
            + L("active", Plain.Endpoint, ftp: "{ data_mode: active }")
            + L("keep", Plain.Endpoint, ftp: "{ data_mode: keep }")
            + L("named", "", policy: "named")
            + L("ftps", Plain.Endpoint, ftp: "{ tls: { cert: gw.crt, key: gw.key } }")
            + L("required", Plain.Endpoint, ftp: "{ tls: { cert: gw.crt, key: gw.key }, client_tls: required }")
            + L("uptls", Tls.Endpoint, ftp: "{ upstream_tls: required, upstream_ca: gw.crt }")
            + L("v6", V6.Endpoint, listen: "[::1]:0")
            + L("garbage", $"127.0.0.1:{Garbage.Port}")
            + L("garbage-greeting", $"127.0.0.1:{GarbageGreeting.Port}")
            + L("ports", Plain.Endpoint, ftp: $"{{ passive_ports: {PassivePort}, data_timeout: 5s }}")
            + L("short", Plain.Endpoint, ftp: "{ max_line: 100 }")
            + L("group", "pair")
            + $$"""
            upstreams:
              pair: { targets: ["127.0.0.1:{{Wait.FreePort()}}", "{{Plain.Endpoint}}"], balance: round-robin }
            policies:
              files:
                default: deny
                rules:
                  - deny: { command: [STOR, STOU, APPE, DELE, RMD, MKD, RNFR, RNTO, MFMT], path: "/ro/**" }
                    reason: read-only area
                  - deny: { command: DELE, path: "/pub/**" }
                    reason: pub is kept
                  - deny: { command: SITE }
                  - allow: {}
              named:
                default: deny
                rules:
                  - allow: { command: USER, host: 127.0.0.1, port: {{Plain.Port}} }
                  - deny: { command: USER }
                    reason: server not allowed
                  - allow: {}

            """;
        var files = new Dictionary<string, string>
        {
            ["gw.crt"] = await File.ReadAllTextAsync(pem.Cert),
            ["gw.key"] = await File.ReadAllTextAsync(pem.Key),
        };
        Gateway = await TestGateway.StartAsync(yaml, files);
    }

    public int Port(string listener) => Gateway.Port(listener);

    public string Url(string listener, string path, string user = "alice:secret") => $"ftp://{user}@127.0.0.1:{Port(listener)}{path}";

    public static string Sha(byte[] b) => Convert.ToHexStringLower(SHA256.HashData(b));

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Plain.DisposeAsync();
        await Tls.DisposeAsync();
        await V6.DisposeAsync();
        await Garbage.DisposeAsync();
        await GarbageGreeting.DisposeAsync();
        try { Directory.Delete(Root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A server that greets with <paramref name="greeting"/> and answers the first line with <paramref name="answer"/>.</summary>
public sealed class GarbageServer : IAsyncDisposable
{
    readonly Socket _listen = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    readonly CancellationTokenSource _stop = new();
    public int Port { get; }

    public GarbageServer(string greeting, string? answer)
    {
        _listen.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listen.Listen(16);
        Port = ((IPEndPoint)_listen.LocalEndPoint!).Port;
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket s;
                try { s = await _listen.AcceptAsync(_stop.Token); }
                catch (Exception) { break; }
                _ = Task.Run(async () =>
                {
                    using (s)
                    {
                        try
                        {
                            await s.SendAsync(System.Text.Encoding.ASCII.GetBytes(greeting), SocketFlags.None);
                            var buf = new byte[4096];
                            if (answer is not null && await s.ReceiveAsync(buf, SocketFlags.None, _stop.Token) > 0)
                                await s.SendAsync(System.Text.Encoding.ASCII.GetBytes(answer), SocketFlags.None);
                            while (await s.ReceiveAsync(buf, SocketFlags.None, _stop.Token) > 0) { }
                        }
                        catch (Exception e) when (e is SocketException or OperationCanceledException) { }
                    }
                });
            }
        });
    }

    public ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listen.Dispose();
        return ValueTask.CompletedTask;
    }
}
