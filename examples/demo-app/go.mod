module demoapp

go 1.19
